// Package ociruntime is corral as an OCI runtime: the operations of runc's
// command line (create, start, state, kill, delete, exec, ps, events,
// update, pause, resume, features) over libcontainer, so that containerd's
// runc shim, and through it Kubernetes, can run containers in corral's
// sandbox. The bundle's config.json is the container's spec and is
// honoured; a Policy, if given, may only tighten it.
package ociruntime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// ConfigFile is the name of a bundle's spec.
const ConfigFile = "config.json"

// LoadBundle reads the spec of the bundle dir: a spec without a process,
// a root or a root directory that exists is an error. A field this
// runtime does not know is ignored, as the runtime spec requires, and
// named in unknown (the caller warns, or refuses it by its policy: a
// setting silently ignored could be a protection someone believes in).
func LoadBundle(dir string) (s *rspec.Spec, unknown string, err error) {
	path := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("bundle %s: %w", dir, err)
	}
	s, unknown, err = ParseSpec(data)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	root := s.Root.Path
	if !filepath.IsAbs(root) {
		root = filepath.Join(dir, root)
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return nil, "", fmt.Errorf("%s: root.path %q: the bundle has no root directory there", path, s.Root.Path)
	}
	return s, unknown, nil
}

// ParseSpec decodes and checks a config.json. unknown is the first field
// it does not know (ignored), or "".
func ParseSpec(data []byte) (s *rspec.Spec, unknown string, err error) {
	s, err = decodeSpec(data, true)
	if name, ok := unknownField(err); ok {
		unknown = name
		s, err = decodeSpec(data, false)
	}
	if err != nil {
		return nil, "", err
	}
	if s.Version == "" {
		return nil, "", errors.New("ociVersion: missing")
	}
	if s.Root == nil || s.Root.Path == "" {
		return nil, "", errors.New("root.path: missing: a container needs a root filesystem")
	}
	if s.Linux == nil {
		return nil, "", errors.New("linux: missing: this runtime runs Linux containers only")
	}
	if err := CheckProcess(s.Process); err != nil {
		return nil, "", fmt.Errorf("process: %w", err)
	}
	return s, unknown, nil
}

func decodeSpec(data []byte, strict bool) (*rspec.Spec, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if strict {
		dec.DisallowUnknownFields()
	}
	var s rspec.Spec
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("malformed spec: %w", err)
	}
	if dec.More() {
		return nil, errors.New("malformed spec: data after the JSON object")
	}
	return &s, nil
}

// unknownField is the field named by encoding/json's error for an unknown
// one (it has no type of its own, only this text).
func unknownField(err error) (string, bool) {
	const prefix = "json: unknown field "
	if err == nil {
		return "", false
	}
	msg := err.Error()
	i := strings.Index(msg, prefix)
	if i < 0 {
		return "", false
	}
	return strings.Trim(msg[i+len(prefix):], `"`), true
}

// CheckProcess refuses a process a container cannot run.
func CheckProcess(p *rspec.Process) error {
	switch {
	case p == nil:
		return errors.New("missing")
	case len(p.Args) == 0:
		return errors.New("args: empty: want the command to run")
	case p.Cwd == "" || !filepath.IsAbs(p.Cwd):
		return fmt.Errorf("cwd %q: want an absolute path", p.Cwd)
	case p.SelinuxLabel != "":
		return errors.New("selinuxLabel: SELinux is not supported by corral")
	}
	return nil
}
