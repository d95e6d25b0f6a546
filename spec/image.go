package spec

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/sys/user"
)

// Pull policies (pull:): when a service's image is fetched from its
// registry before the service starts.
const (
	// PullMissing, the default: only when the store does not have it.
	PullMissing = "missing"
	// PullAlways: at every start, so a moved tag is followed.
	PullAlways = "always"
	// PullNever: never; a missing image fails the start.
	PullNever = "never"
)

// Image is a service whose root is an OCI image (image: REF): the image's
// layers, with its config's command, environment, working directory and
// user where the service file does not say otherwise.
type Image struct {
	// Ref names the image: NAME[:TAG] or NAME@sha256:DIGEST, as docker
	// pull takes it.
	Ref string
	// Entrypoint replaces the image's (entrypoint:); nil keeps it.
	Entrypoint []string
	// Pull is PullMissing (also when empty), PullAlways or PullNever.
	Pull string
	// UserFromImage and WorkdirFromImage: the service file has no user:
	// or workdir:, so the image's User and WorkingDir apply.
	UserFromImage, WorkdirFromImage bool
	// Digest is the manifest digest the sandbox was made from, and
	// Declared what the file said where the image's config now stands
	// (both set when the image is applied, never by the file): a sandbox
	// is compared with the file as the file said it.
	Digest   string    `json:",omitempty"`
	Declared *Declared `json:",omitempty"`
}

// Declared are the fields of a service that an image's config fills in,
// as the service file gave them.
type Declared struct {
	Command, Env []string
	Workdir      string
	User         User
}

// AsDeclared is s as its service file says it: an applied image's
// command, environment, working directory and user taken back out.
func (s *Service) AsDeclared() *Service {
	if s.Image == nil || s.Image.Declared == nil {
		return s
	}
	out := *s
	d := s.Image.Declared
	out.Command, out.Env, out.Workdir, out.User = d.Command, d.Env, d.Workdir, d.User
	im := *s.Image
	im.Digest, im.Declared = "", nil
	out.Image = &im
	return &out
}

// EffectivePull is the pull policy, its default filled in.
func (im *Image) EffectivePull() string {
	if im.Pull == "" {
		return PullMissing
	}
	return im.Pull
}

// validateImage adds s's errors about its image to add.
func validateImage(s *Service, add func(field, format string, args ...any)) {
	im := s.Image
	if im == nil {
		return
	}
	if _, err := name.ParseReference(im.Ref, name.StrictValidation); err != nil {
		if _, err := name.ParseReference(im.Ref); err != nil {
			add("image", "%q is not an image reference: use NAME[:TAG] or NAME@sha256:DIGEST, as docker pull takes (%v)", im.Ref, err)
		}
	}
	if s.Rootfs != "" {
		add("image", "the service has both image and rootfs: its root is one or the other")
	}
	switch im.Pull {
	case "", PullMissing, PullAlways, PullNever:
	default:
		add("pull", "%q is none of %s (the default), %s, %s", im.Pull, PullMissing, PullAlways, PullNever)
	}
	if im.Entrypoint != nil && (len(im.Entrypoint) == 0 || im.Entrypoint[0] == "") {
		add("entrypoint", "an empty entrypoint: give the program to run, or leave entrypoint out for the image's")
	}
}

// ImageConfig is what an image's config says about running it (the OCI
// image config's Entrypoint, Cmd, Env, WorkingDir and User).
type ImageConfig struct {
	Entrypoint, Cmd, Env []string
	WorkingDir, User     string
}

// ImageFiles reads a file of the image's root (its /etc/passwd and
// /etc/group, to resolve a User given by name); a missing file is nil,
// nil.
type ImageFiles func(path string) ([]byte, error)

// WithImage is s as it runs from an image with config cfg, as Docker
// users expect:
//   - the command is the entrypoint (the service's entrypoint:, else the
//     image's) followed by the service's command, else the image's Cmd;
//     a service that replaces the entrypoint and gives no command gets
//     no Cmd (docker run --entrypoint does the same);
//   - the environment is the image's, with the service's entries winning
//     key by key;
//   - the working directory and user are the image's unless the service
//     gives its own; a user name is looked up in the image's /etc/passwd
//     (its group in /etc/group).
//
// The result is validated again (a user of the image outside the
// sandbox's IDs is refused there).
func WithImage(s *Service, ref string, cfg ImageConfig, files ImageFiles) (*Service, error) {
	out := *s
	im := s.Image
	applied := *im
	applied.Declared = &Declared{Command: s.Command, Env: s.Env, Workdir: s.Workdir, User: s.User}
	out.Image = &applied
	entrypoint, cmd := cfg.Entrypoint, cfg.Cmd
	if im.Entrypoint != nil {
		entrypoint, cmd = im.Entrypoint, nil
	}
	if len(s.Command) > 0 {
		cmd = s.Command
	}
	out.Command = slices.Concat(entrypoint, cmd)
	if len(out.Command) == 0 {
		return nil, &FieldError{Field: "command", Err: fmt.Errorf("image %s has no Entrypoint or Cmd: give the service a command", ref)}
	}
	out.Env = mergeEnv(cfg.Env, s.Env)
	if im.WorkdirFromImage {
		out.Workdir = cmp.Or(cfg.WorkingDir, "/")
	}
	if im.UserFromImage && cfg.User != "" {
		u, err := imageUser(cfg.User, files)
		if err != nil {
			return nil, &FieldError{Field: "user", Err: fmt.Errorf("image %s: User %q: %w", ref, cfg.User, err)}
		}
		out.User = u
	}
	if err := Validate(&out); err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	return &out, nil
}

// mergeEnv is base with over's entries added, replacing base's of the
// same key, in base's order and then over's.
func mergeEnv(base, over []string) []string {
	key := func(kv string) string { k, _, _ := strings.Cut(kv, "="); return k }
	overKeys := map[string]bool{}
	for _, kv := range over {
		overKeys[key(kv)] = true
	}
	var out []string
	for _, kv := range base {
		if !overKeys[key(kv)] {
			out = append(out, kv)
		}
	}
	return append(out, over...)
}

// imageUser resolves an image config's User (uid, uid:gid, name or
// name:group) as runc does (moby/sys/user), names from the image's own
// /etc/passwd and /etc/group.
func imageUser(spec string, files ImageFiles) (User, error) {
	passwd, err := imageFile(files, "/etc/passwd")
	if err != nil {
		return User{}, err
	}
	group, err := imageFile(files, "/etc/group")
	if err != nil {
		return User{}, err
	}
	u, err := user.GetExecUser(spec, nil, passwd, group)
	if err != nil {
		name, grp, _ := strings.Cut(spec, ":")
		switch {
		case errors.Is(err, user.ErrNoPasswdEntries):
			return User{}, fmt.Errorf("no user %q in the image's /etc/passwd", name)
		case errors.Is(err, user.ErrNoGroupEntries):
			return User{}, fmt.Errorf("no group %q in the image's /etc/group", grp)
		}
		return User{}, err
	}
	return User{UID: uint32(u.Uid), GID: uint32(u.Gid)}, nil
}

// imageFile is one of the image's files as a reader, nil if it has none.
func imageFile(files ImageFiles, path string) (io.Reader, error) {
	if files == nil {
		return nil, nil
	}
	data, err := files(path)
	if err != nil {
		return nil, fmt.Errorf("read the image's %s: %w", path, err)
	}
	if data == nil {
		return nil, nil
	}
	return bytes.NewReader(data), nil
}
