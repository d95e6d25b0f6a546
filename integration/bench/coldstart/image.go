package coldstart

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/corral-dev/corral/integration/bench/cgroupfs"
	"github.com/corral-dev/corral/integration/bench/scratch"
)

// BenchImage is the busybox root as an image in corral's store.
const BenchImage = "corral-bench/busybox:1"

// ImageGoalRatio bounds a start from an image (an overlay of its
// id-mapped layers) against one on the built-in root, at the median.
const ImageGoalRatio = 1.3

// imageVariant is `corral run --image` of the busybox root made an image
// and imported into a store in the scratch dir.
func imageVariant(corral string, sc *scratch.Dir) (*Variant, error) {
	state, err := sc.StateDir("state")
	if err != nil {
		return nil, err
	}
	data := sc.Path("data")
	layoutDir := sc.Path("busybox-oci")
	if err := WriteImageLayout(rootfsDir(sc), sc.Path("busybox-layer.tar"), layoutDir); err != nil {
		return nil, fmt.Errorf("busybox image: %w", err)
	}
	if out, err := exec.Command(corral, "--data-dir", data, "image", "import", layoutDir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("busybox image: corral image import: %v: %s", err, out)
	}
	args := []string{corral, "--state-dir", state, "--data-dir", data, "run", "--pull", "never",
		"--memory", MemoryFlag, "--cpus", CPUsFlag, "--pids", PidsFlag,
		"--cgroup-parent", cgroupfs.Parent, "--image", BenchImage, "--", "/bin/true"}
	return &Variant{
		name:  "corral --image busybox",
		note:  "the busybox root as a one-layer image: an overlay of its id-mapped layer",
		exec:  hostExec{},
		argv:  func(int) []string { return args },
		sweep: func() error { return nil },
	}, nil
}

// WriteImageLayout makes an OCI layout at dir of one image whose single
// layer is root's tree (tarred to tarPath), named BenchImage.
func WriteImageLayout(root, tarPath, dir string) error {
	if err := tarTree(root, tarPath); err != nil {
		return err
	}
	layer, err := tarball.LayerFromFile(tarPath)
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Cmd = []string{"/bin/true"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": BenchImage}),
		layout.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}))
}

// tarTree writes root's tree (dirs, files, symlinks), root-owned.
func tarTree(root, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name, h.Uid, h.Gid, h.Uname, h.Gname = rel, 0, 0, "", ""
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
