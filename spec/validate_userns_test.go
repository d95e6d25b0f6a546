package spec

import (
	"strings"
	"testing"
)

// TestUserOutsideTheNamespaceIsRefused: under the sandbox's own user
// namespace a user must be an ID of it (0-65535); the host's namespace
// takes any; idmap needs the sandbox's own.
func TestUserOutsideTheNamespaceIsRefused(t *testing.T) {
	s := &Service{Name: "a", Command: []string{"/bin/true"}, User: User{UID: 70000, GID: 70000}}
	if err := Validate(s); err == nil || !strings.Contains(err.Error(), "user: 70000:70000 is outside the sandbox's user namespace (IDs 0-65535)") {
		t.Errorf("uid 70000: %v", err)
	}
	s.Security.HostUserNamespace = true
	if err := Validate(s); err != nil {
		t.Errorf("uid 70000 with user_namespace: host: %v", err)
	}
	s.Mounts = []Mount{{Source: "/srv", Destination: "/srv", ReadOnly: true, IDMap: true}}
	if err := Validate(s); err == nil || !strings.Contains(err.Error(), "idmap needs the sandbox's own user namespace") {
		t.Errorf("idmap with user_namespace: host: %v", err)
	}
}
