// Package imagerun turns a service whose root is an OCI image (image:)
// into what its sandbox is made from: the service with the image's config
// applied, and the image's layers, held by a lease so that no
// `corral image rm` or `prune` takes them from under a sandbox.
package imagerun

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/corral-dev/corral/rootfs/image"
	"github.com/corral-dev/corral/rootfs/image/source"
	"github.com/corral-dev/corral/spec"
)

// StoreDir is the image store's directory under a data dir.
func StoreDir(dataDir string) string { return filepath.Join(dataDir, "images") }

// Prepared is a service ready to be made from its image.
type Prepared struct {
	// Service is the service with the image's config applied.
	Service *spec.Service
	// Image is the image it runs, as the store has it.
	Image *image.Image
	// Layers are the image's unpacked layers, bottom first.
	Layers []string
	lease  *image.Lease
}

// Pull fetches ref from its registry into the store; maxLayer bounds each
// layer's unpacked size (0: the store's default).
func Pull(ctx context.Context, store *image.Store, ref string, opt source.RegistryOptions, maxLayer int64) (*image.Image, error) {
	// The registry names its one image by ref's tag, if it has one.
	return store.Import(ctx, source.Registry(ref, opt), image.ImportOptions{MaxLayerSize: maxLayer})
}

// Prepare finds svc's image in the store, pulled first as its pull:
// says (always; missing: when the store lacks it), and leases it to this
// process until Hold or Release. svc must have an Image.
func Prepare(ctx context.Context, store *image.Store, svc *spec.Service) (*Prepared, error) {
	ref := svc.Image.Ref
	pull := func() error {
		if _, err := Pull(ctx, store, ref, source.RegistryOptions{}, 0); err != nil {
			return &spec.FieldError{Field: "image", Err: fmt.Errorf("pull %s: %w", ref, err)}
		}
		return nil
	}
	policy := svc.Image.EffectivePull()
	if policy == spec.PullAlways {
		if err := pull(); err != nil {
			return nil, err
		}
	}
	lease, err := store.Lease(ctx, ref, 0)
	if errors.Is(err, image.ErrNotFound) {
		if policy == spec.PullNever {
			return nil, &spec.FieldError{Field: "image", Err: fmt.Errorf("%s is not in the image store %s, and pull is never: corral image import or pull it", ref, store.Dir())}
		}
		if policy == spec.PullMissing {
			if err := pull(); err != nil {
				return nil, err
			}
			lease, err = store.Lease(ctx, ref, 0)
		}
	}
	if err != nil {
		return nil, &spec.FieldError{Field: "image", Err: err}
	}
	p, err := prepare(svc, lease)
	if err != nil {
		return nil, errors.Join(err, lease.Release())
	}
	return p, nil
}

func prepare(svc *spec.Service, lease *image.Lease) (*Prepared, error) {
	img := lease.Image
	cfg, err := img.Config()
	if err != nil {
		return nil, &spec.FieldError{Field: "image", Err: fmt.Errorf("%s: %w", img.Name(), err)}
	}
	c := cfg.Config
	resolved, err := spec.WithImage(svc, svc.Image.Ref, spec.ImageConfig{
		Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir, User: c.User,
	}, img.ReadFile)
	if err != nil {
		return nil, err
	}
	resolved.Image.Digest = img.Digest.String()
	return &Prepared{Service: resolved, Image: img, Layers: img.LayerDirs(), lease: lease}, nil
}

// Hold hands the lease over to the sandbox's init, pid, which holds the
// image for as long as it lives (also after this process is gone: a
// daemon's sandboxes outlive it); the lease lapses when the init ends.
func (p *Prepared) Hold(pid int) error {
	if _, err := p.lease.Transfer(pid); err != nil {
		return fmt.Errorf("image %s: %w", p.Image.Name(), err)
	}
	return nil
}

// Release gives up this process's lease (the sandbox failed to start, or
// Hold passed it on).
func (p *Prepared) Release() error { return p.lease.Release() }
