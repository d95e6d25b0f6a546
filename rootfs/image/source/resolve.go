package source

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/containerd/platforms"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Want says which image of a source Resolve picks.
type Want struct {
	// Name picks the image the source names so (a full or short
	// reference, or an index's bare ref.name tag). Empty: the source must
	// hold one image (one set of platform variants).
	Name string
	// Platform picks the variant of a multi-platform image. Nil: this
	// host's (linux and GOARCH, with the CPU variant on arm).
	Platform *v1.Platform
}

// Image is an image picked from a source, its manifest and config read
// and verified.
type Image struct {
	// Names are the names the source gives the image (normalised); when
	// it was picked by name, that name alone.
	Names []string
	// Manifest describes the manifest, with the platform it is for.
	Manifest    v1.Descriptor
	RawManifest []byte
	// ConfigDescriptor describes the config.
	ConfigDescriptor v1.Descriptor
	RawConfig        []byte
	Config           *v1.ConfigFile
	// Layers are the layers, bottom first.
	Layers []Layer
}

// Layer is one layer of an Image.
type Layer struct {
	// Descriptor describes the layer's blob as stored (compressed).
	Descriptor v1.Descriptor
	// DiffID is the digest of the uncompressed tar, from the config.
	DiffID v1.Hash
}

// maxNesting bounds how deep indexes may nest.
const maxNesting = 4

// Resolve picks the image want names in r and reads its manifest and
// config.
func Resolve(ctx context.Context, r Reader, want Want) (*Image, error) {
	host := hostPlatform(want.Platform)
	match := platforms.OnlyStrict(host)

	cands, names, err := pick(r.Index(), want.Name)
	if err != nil {
		return nil, err
	}
	var d v1.Descriptor
	if len(cands) == 1 {
		d = cands[0]
	} else {
		// Several manifests at the top level: a multi-platform image laid
		// out without an index of its own.
		d, err = choosePlatform(cands, match, host)
		if err != nil {
			return nil, err
		}
	}
	for depth := 0; isIndex(d.MediaType); depth++ {
		if depth == maxNesting {
			return nil, fmt.Errorf("index %s: indexes nest over %d deep: %w", d.Digest, maxNesting, ErrUnsupported)
		}
		raw, err := readDocument(ctx, r, d)
		if err != nil {
			return nil, fmt.Errorf("read index: %w", err)
		}
		idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", d.Digest, err)
		}
		if idx.MediaType != "" && idx.MediaType != d.MediaType {
			return nil, fmt.Errorf("index %s: its descriptor says %s, the document %s: %w", d.Digest, d.MediaType, idx.MediaType, ErrUnsupported)
		}
		if len(idx.Manifests) == 0 {
			return nil, fmt.Errorf("index %s lists no manifest: %w", d.Digest, ErrNotFound)
		}
		idxDigest := d.Digest
		d, err = choosePlatform(idx.Manifests, match, host)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", idxDigest, err)
		}
	}
	img, err := readImage(ctx, r, d)
	if err != nil {
		return nil, err
	}
	p := img.Config.Platform()
	if p != nil && p.OS != "" {
		if !match.Match(ociPlatform(*p)) {
			return nil, fmt.Errorf("%w: the image is for %s, this host is %s", ErrNoPlatform, p, platforms.Format(host))
		}
		if img.Manifest.Platform == nil {
			img.Manifest.Platform = p
		}
	}
	img.Names = names
	return img, nil
}

// pick returns the top-level entries want names (all of them if want is
// empty), one per digest, and the names the source gives them.
func pick(entries []Entry, want string) ([]v1.Descriptor, []string, error) {
	if len(entries) == 0 {
		return nil, nil, fmt.Errorf("the source holds no image: %w", ErrNotFound)
	}
	var norm string
	if want != "" {
		norm, _ = Normalize(want)
	}
	var (
		cands   []v1.Descriptor
		nameSet [][]string // the names of each candidate
		names   []string
		all     []string
	)
	for _, e := range entries {
		all = append(all, e.Names...)
		if want != "" && !slices.Contains(e.Names, norm) && e.Descriptor.Annotations[AnnotationRefName] != want {
			continue
		}
		i := slices.IndexFunc(cands, func(d v1.Descriptor) bool { return d.Digest == e.Descriptor.Digest })
		if i < 0 {
			cands = append(cands, e.Descriptor)
			nameSet = append(nameSet, nil)
			i = len(cands) - 1
		}
		for _, n := range e.Names {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
			if !slices.Contains(nameSet[i], n) {
				nameSet[i] = append(nameSet[i], n)
			}
		}
	}
	if len(cands) == 0 {
		return nil, nil, fmt.Errorf("no image named %q; the source has %s: %w", want, listNames(all), ErrNotFound)
	}
	if want != "" && slices.Contains(names, norm) {
		// Picked by a name the source gives: that name alone.
		names = []string{norm}
	}
	if len(cands) > 1 && !variants(cands, nameSet) {
		return nil, nil, fmt.Errorf("%w (%d): %s; pick one by name", ErrAmbiguous, len(cands), listNames(all))
	}
	return cands, names, nil
}

// variants reports whether several top-level entries are one image's
// platform variants (an image laid out without an index of its own):
// manifests, each for another platform, under the same names.
func variants(cands []v1.Descriptor, names [][]string) bool {
	var seen []string
	for i, d := range cands {
		if isIndex(d.MediaType) || d.Platform == nil || slices.Contains(seen, d.Platform.String()) {
			return false
		}
		seen = append(seen, d.Platform.String())
		a, b := slices.Clone(names[i]), slices.Clone(names[0])
		slices.Sort(a)
		slices.Sort(b)
		if !slices.Equal(a, b) {
			return false
		}
	}
	return true
}

func listNames(names []string) string {
	if len(names) == 0 {
		return "no names"
	}
	s := slices.Clone(names)
	slices.Sort(s)
	return strings.Join(slices.Compact(s), ", ")
}

// choosePlatform picks, of an index's manifests, the one for host: the
// best match, else the only one that says no platform.
func choosePlatform(ds []v1.Descriptor, match platforms.MatchComparer, host ispec.Platform) (v1.Descriptor, error) {
	var (
		matched, unknown []v1.Descriptor
		have             []string
	)
	for _, d := range ds {
		if d.Platform == nil {
			unknown = append(unknown, d)
			continue
		}
		have = append(have, d.Platform.String())
		if match.Match(ociPlatform(*d.Platform)) {
			matched = append(matched, d)
		}
	}
	if len(matched) > 0 {
		sort.SliceStable(matched, func(i, j int) bool {
			return match.Less(ociPlatform(*matched[i].Platform), ociPlatform(*matched[j].Platform))
		})
		return matched[0], nil
	}
	if len(unknown) == 1 {
		return unknown[0], nil
	}
	if len(have) == 0 {
		return v1.Descriptor{}, fmt.Errorf("%w: %d manifests say no platform", ErrAmbiguous, len(unknown))
	}
	slices.Sort(have)
	return v1.Descriptor{}, fmt.Errorf("%w: none for %s; it has %s", ErrNoPlatform, platforms.Format(host), strings.Join(slices.Compact(have), ", "))
}

// readImage reads and checks the manifest d and its config.
func readImage(ctx context.Context, r Reader, d v1.Descriptor) (*Image, error) {
	if d.MediaType != types.OCIManifestSchema1 && d.MediaType != types.DockerManifestSchema2 {
		return nil, fmt.Errorf("manifest %s: media type %q: %w", d.Digest, d.MediaType, ErrUnsupported)
	}
	raw, err := readDocument(ctx, r, d)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("manifest %s: schema version %d: %w", d.Digest, m.SchemaVersion, ErrUnsupported)
	}
	if m.MediaType != "" && m.MediaType != d.MediaType {
		return nil, fmt.Errorf("manifest %s: its descriptor says %s, the document %s: %w", d.Digest, d.MediaType, m.MediaType, ErrUnsupported)
	}
	if m.Config.MediaType != types.OCIConfigJSON && m.Config.MediaType != types.DockerConfigJSON {
		return nil, fmt.Errorf("manifest %s: config media type %q (not a container image): %w", d.Digest, m.Config.MediaType, ErrUnsupported)
	}
	rawConfig, err := readDocument(ctx, r, m.Config)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("manifest %s has %d layers, its config %d diff IDs", d.Digest, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	img := &Image{Manifest: d, RawManifest: raw, ConfigDescriptor: m.Config, RawConfig: rawConfig, Config: cfg}
	for i, l := range m.Layers {
		if !layerType(l.MediaType) {
			return nil, fmt.Errorf("layer %d of %d (%s): media type %q: %w", i+1, len(m.Layers), l.Digest, l.MediaType, ErrUnsupported)
		}
		if l.Digest.Algorithm != "sha256" || cfg.RootFS.DiffIDs[i].Algorithm != "sha256" {
			return nil, fmt.Errorf("layer %d of %d (%s): only sha256 digests are supported: %w", i+1, len(m.Layers), l.Digest, ErrUnsupported)
		}
		if l.Size < 0 {
			return nil, fmt.Errorf("layer %d of %d (%s): size %d", i+1, len(m.Layers), l.Digest, l.Size)
		}
		img.Layers = append(img.Layers, Layer{Descriptor: l, DiffID: cfg.RootFS.DiffIDs[i]})
	}
	return img, nil
}

func isIndex(t types.MediaType) bool {
	return t == types.OCIImageIndex || t == types.DockerManifestList
}

// layerType reports whether t is a layer media type this package takes:
// a tar, uncompressed or compressed with gzip or zstd. Foreign layers
// (Windows base layers, fetched from elsewhere) are not.
func layerType(t types.MediaType) bool {
	switch t {
	case types.OCILayer, types.OCILayerZStd, types.OCIUncompressedLayer,
		types.OCIRestrictedLayer, types.OCIUncompressedRestrictedLayer,
		types.DockerLayer, types.DockerUncompressedLayer:
		return true
	}
	return false
}

// hostPlatform is p, or this host's platform if p is nil.
func hostPlatform(p *v1.Platform) ispec.Platform {
	if p == nil {
		return platforms.Normalize(platforms.DefaultSpec())
	}
	return platforms.Normalize(ociPlatform(*p))
}

func ociPlatform(p v1.Platform) ispec.Platform {
	return ispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, OSVersion: p.OSVersion, OSFeatures: p.OSFeatures}
}
