package spec

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

// A service with an image needs no command; what it leaves out comes from
// the image; keys it sets are kept apart from the image's.
func TestParseImageService(t *testing.T) {
	cfg, err := Parse("corral.yaml", []byte("services:\n  app:\n    image: localhost:5000/app:1\n  pinned:\n    image: busybox@sha256:"+strings.Repeat("a", 64)+"\n    entrypoint: [/bin/sh, -c]\n    command: [echo hi]\n    user: 1000\n    workdir: /srv\n    pull: never\n"))
	if err != nil {
		t.Fatal(err)
	}
	app := cfg.Unit("app").Service
	if app.Image == nil || app.Image.Ref != "localhost:5000/app:1" || app.Image.EffectivePull() != PullMissing ||
		!app.Image.UserFromImage || !app.Image.WorkdirFromImage || app.Workdir != "" || app.Command != nil || app.Image.Entrypoint != nil {
		t.Errorf("app: %+v image %+v", app, app.Image)
	}
	p := cfg.Unit("pinned").Service
	if p.Image.UserFromImage || p.Image.WorkdirFromImage || p.Workdir != "/srv" || p.User.UID != 1000 ||
		!slices.Equal(p.Image.Entrypoint, []string{"/bin/sh", "-c"}) || p.Image.Pull != PullNever {
		t.Errorf("pinned: %+v image %+v", p, p.Image)
	}
	// A changed image, entrypoint or pull policy needs a new sandbox.
	next := *p.Image
	next.Ref = "busybox:1.36"
	q := p
	q.Image = &next
	if Compare(&p, &q) != Reshaped {
		t.Error("a changed image compares as the same sandbox")
	}
	if Compare(&p, &p) != Same {
		t.Error("the same image compares as changed")
	}
}

func imageFiles(files map[string]string) ImageFiles {
	return func(path string) ([]byte, error) {
		if data, ok := files[path]; ok {
			return []byte(data), nil
		}
		return nil, nil
	}
}

// WithImage applies an image's config as Docker users expect.
func TestWithImage(t *testing.T) {
	files := imageFiles(map[string]string{
		"/etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\nodd:x:70:notanumber::/:/bin/sh\n",
		"/etc/group":  "root:x:0:\nstaff:x:50:\napp:x:1001:\n",
	})
	cfg := ImageConfig{
		Entrypoint: []string{"/entry"}, Cmd: []string{"serve", "--port", "80"},
		Env: []string{"PATH=/usr/bin", "MODE=image", "KEEP=1"}, WorkingDir: "/app", User: "app",
	}
	base := func() *Service {
		return &Service{Name: "web", Image: &Image{Ref: "app:1", UserFromImage: true, WorkdirFromImage: true}, Env: []string{"MODE=service"}}
	}
	for _, tc := range []struct {
		desc    string
		change  func(s *Service)
		cfg     func(c *ImageConfig)
		command []string
		user    User
		workdir string
	}{
		{"the image's all", nil, nil, []string{"/entry", "serve", "--port", "80"}, User{1000, 1001}, "/app"},
		{"a command replaces Cmd", func(s *Service) { s.Command = []string{"check"} }, nil, []string{"/entry", "check"}, User{1000, 1001}, "/app"},
		{"an entrypoint drops Cmd", func(s *Service) { s.Image.Entrypoint = []string{"/bin/sh"} }, nil, []string{"/bin/sh"}, User{1000, 1001}, "/app"},
		{"entrypoint and command", func(s *Service) { s.Image.Entrypoint = []string{"/bin/sh", "-c"}; s.Command = []string{"id"} }, nil, []string{"/bin/sh", "-c", "id"}, User{1000, 1001}, "/app"},
		{"the service's user and workdir", func(s *Service) {
			s.Image.UserFromImage, s.Image.WorkdirFromImage = false, false
			s.User, s.Workdir = User{7, 8}, "/srv"
		}, nil, nil, User{7, 8}, "/srv"},
		{"user:group by names", nil, func(c *ImageConfig) { c.User = "app:staff" }, nil, User{1000, 50}, ""},
		{"numeric user, its passwd group", nil, func(c *ImageConfig) { c.User = "1000" }, nil, User{1000, 1001}, ""},
		{"numeric user and group", nil, func(c *ImageConfig) { c.User = "5:6" }, nil, User{5, 6}, ""},
		{"numeric user not in passwd", nil, func(c *ImageConfig) { c.User = "4242" }, nil, User{4242, 0}, ""},
		{"no User: root", nil, func(c *ImageConfig) { c.User = "" }, nil, User{0, 0}, ""},
		{"no WorkingDir: /", nil, func(c *ImageConfig) { c.WorkingDir = "" }, nil, User{1000, 1001}, "/"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s, c := base(), cfg
			if tc.change != nil {
				tc.change(s)
			}
			if tc.cfg != nil {
				tc.cfg(&c)
			}
			got, err := WithImage(s, "app:1", c, files)
			if err != nil {
				t.Fatal(err)
			}
			if tc.command != nil && !slices.Equal(got.Command, tc.command) {
				t.Errorf("command %q, want %q", got.Command, tc.command)
			}
			if got.User != tc.user {
				t.Errorf("user %v, want %v", got.User, tc.user)
			}
			if tc.workdir != "" && got.Workdir != tc.workdir {
				t.Errorf("workdir %q, want %q", got.Workdir, tc.workdir)
			}
			if want := []string{"PATH=/usr/bin", "KEEP=1", "MODE=service"}; !slices.Equal(got.Env, want) {
				t.Errorf("env %q, want %q (the service's entries win)", got.Env, want)
			}
			if s.Command != nil && tc.command != nil && &got.Command[0] == &s.Command[0] {
				t.Error("the result shares the service's command")
			}
		})
	}
}

func TestWithImageRefusals(t *testing.T) {
	files := imageFiles(map[string]string{"/etc/passwd": "root:x:0:0::/:/bin/sh\nbig:x:70000:70000::/:/bin/sh\n"})
	svc := func() *Service {
		return &Service{Name: "web", Image: &Image{Ref: "app:1", UserFromImage: true, WorkdirFromImage: true}}
	}
	for _, tc := range []struct {
		desc  string
		cfg   ImageConfig
		field string
		want  string
	}{
		{"nothing to run", ImageConfig{}, "command", "image app:1 has no Entrypoint or Cmd: give the service a command"},
		{"an unknown user", ImageConfig{Cmd: []string{"x"}, User: "nobody"}, "user", `image app:1: User "nobody": no user "nobody" in the image's /etc/passwd`},
		{"an unknown group", ImageConfig{Cmd: []string{"x"}, User: "root:wheel"}, "user", `no group "wheel" in the image's /etc/group`},
		{"a user outside the sandbox's IDs", ImageConfig{Cmd: []string{"x"}, User: "big"}, "user", "70000:70000 is outside the sandbox's user namespace"},
	} {
		_, err := WithImage(svc(), "app:1", tc.cfg, files)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %s: ...%s...", tc.desc, err, tc.field, tc.want)
		}
	}
	// The image's passwd unreadable: said, with the path.
	bad := func(string) ([]byte, error) { return nil, os.ErrPermission }
	if _, err := WithImage(svc(), "app:1", ImageConfig{Cmd: []string{"x"}, User: "app"}, bad); err == nil || !strings.Contains(err.Error(), "read the image's /etc/passwd") {
		t.Errorf("unreadable passwd: %v", err)
	}
}

// A sandbox made from an image compares with its service file as the file
// says it, not as the image filled it in: an adopted one is not restarted
// for its image's command.
func TestAppliedImageComparesAsDeclared(t *testing.T) {
	declared := &Service{Name: "web", Image: &Image{Ref: "app:1", UserFromImage: true, WorkdirFromImage: true}, Env: []string{"A=1"}}
	applied, err := WithImage(declared, "app:1", ImageConfig{Cmd: []string{"serve"}, Env: []string{"B=2"}, WorkingDir: "/app"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	applied.Image.Digest = "sha256:abc"
	if Compare(applied, declared) != Same {
		t.Errorf("an applied image compares as changed: %+v vs %+v", applied, declared)
	}
	other := *declared
	other.Env = []string{"A=2"}
	if Compare(applied, &other) != Reshaped {
		t.Error("a changed env compares as the same")
	}
	if declared.Image.Declared != nil || declared.Image.Digest != "" {
		t.Error("WithImage changed the service it was given")
	}
}
