//go:build tools

// Package ocicompliance pins the OCI runtime-tools validation suite
// (v0.9.0) that integration/oci_compliance_test.go and corral-bench's oci
// part build and run against corral-runc and runc. It is a module of its
// own because runtime-tools predates Go modules and was written against
// runtime-spec v1.0.2 (corral uses v1.3), go-selinux before v1.9 (label.
// FileLabel) and go.uuid v1.1 (NewV4 without an error): those versions
// are pinned in go.mod. The wrapper directory is the RUNTIME the
// validation programs run.
package ocicompliance

import (
	_ "github.com/opencontainers/runtime-tools/validation/util"
	_ "github.com/urfave/cli" // runtimetest's
)
