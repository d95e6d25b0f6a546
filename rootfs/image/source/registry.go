package source

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// RegistryOptions shape a pull from a registry.
type RegistryOptions struct {
	// Insecure allows plain HTTP, and TLS without a verified certificate,
	// for this registry. Loopback registries (localhost, 127.0.0.1) are
	// spoken to over HTTP without it.
	Insecure bool
	// Keychain finds credentials; nil is the usual ~/.docker/config.json
	// (what docker login writes) and its credential helpers.
	Keychain authn.Keychain
	// Timeout bounds the wait for a registry's answer (connecting, and
	// the headers of each response; a blob's body may take longer).
	// Zero: DefaultRegistryTimeout.
	Timeout time.Duration
	// Progress, when set, is told of the bytes of each blob as they are
	// read, and of its end (done).
	Progress func(d v1.Descriptor, read int64, done bool)
}

// DefaultRegistryTimeout is how long a registry may take to answer.
const DefaultRegistryTimeout = 30 * time.Second

// Registry is the image ref names in its registry, through the OCI
// distribution (registry v2) protocol: NAME[:TAG] or NAME@sha256:DIGEST.
// Its one entry is named by the tag, if ref has one.
func Registry(ref string, opt RegistryOptions) Source { return registrySource{ref, opt} }

type registrySource struct {
	ref string
	opt RegistryOptions
}

func (s registrySource) String() string { return "registry image " + s.ref }

func (s registrySource) Open(ctx context.Context, _ string) (Reader, error) {
	var nopts []name.Option
	if s.opt.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(s.ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("%q is not an image reference: use NAME[:TAG] or NAME@sha256:DIGEST: %w", s.ref, err)
	}
	kc := s.opt.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	puller, err := remote.NewPuller(remote.WithAuthFromKeychain(kc), remote.WithTransport(s.transport()), remote.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	desc, err := puller.Get(ctx, ref)
	if err != nil {
		return nil, registryError(ref.String(), err)
	}
	r := &registryReader{puller: puller, repo: ref.Context(), top: desc.Descriptor, raw: desc.Manifest, progress: s.opt.Progress}
	var names []string
	if t, ok := ref.(name.Tag); ok {
		names = []string{t.Name()}
	}
	r.entries = []Entry{{Descriptor: desc.Descriptor, Names: names}}
	return r, nil
}

// transport bounds how long a registry may take to answer; Insecure
// also takes any certificate.
func (s registrySource) transport() http.RoundTripper {
	timeout := s.opt.Timeout
	if timeout == 0 {
		timeout = DefaultRegistryTimeout
	}
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = timeout
	t.ResponseHeaderTimeout = timeout
	if s.opt.Insecure {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // --insecure asks for it
	}
	return t
}

type registryReader struct {
	puller   *remote.Puller
	repo     name.Repository
	top      v1.Descriptor
	raw      []byte
	entries  []Entry
	progress func(d v1.Descriptor, read int64, done bool)
}

func (r *registryReader) Index() []Entry { return r.entries }
func (r *registryReader) Close() error   { return nil }

func (r *registryReader) Blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	if d.Digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("blob %q: only sha256 is supported: %w", d.Digest, ErrUnsupported)
	}
	if d.Digest == r.top.Digest {
		return io.NopCloser(bytes.NewReader(r.raw)), nil
	}
	ref := r.repo.Digest(d.Digest.String())
	if isIndex(d.MediaType) || manifestType(d.MediaType) {
		desc, err := r.puller.Get(ctx, ref)
		if err != nil {
			return nil, registryError(ref.String(), err)
		}
		return io.NopCloser(bytes.NewReader(desc.Manifest)), nil
	}
	l, err := r.puller.Layer(ctx, ref)
	if err != nil {
		return nil, registryError(ref.String(), err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, registryError(ref.String(), err)
	}
	if r.progress == nil {
		return rc, nil
	}
	return &progressReader{rc: rc, d: d, report: r.progress}, nil
}

func manifestType(t types.MediaType) bool {
	return t == types.OCIManifestSchema1 || t == types.DockerManifestSchema2
}

// progressReader reports a blob's bytes as they are read.
type progressReader struct {
	rc     io.ReadCloser
	d      v1.Descriptor
	read   int64
	report func(d v1.Descriptor, read int64, done bool)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.rc.Read(b)
	p.read += int64(n)
	p.report(p.d, p.read, errors.Is(err, io.EOF))
	return n, err
}

func (p *progressReader) Close() error { return p.rc.Close() }

// ErrRegistry: the registry refused or failed the request, or did not
// answer.
var ErrRegistry = errors.New("registry")

// registryError says what a registry's failure means for the one who
// asked: not found, not allowed, failing, or not answering.
func registryError(ref string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("%s: %w: no such image or tag (404): %w", ref, ErrNotFound, err)
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%s: %w: not allowed (%d): log in with docker login (credentials are read from ~/.docker/config.json): %w", ref, ErrRegistry, te.StatusCode, err)
		default:
			return fmt.Errorf("%s: %w answered %d: %w", ref, ErrRegistry, te.StatusCode, err)
		}
	}
	// The first contact tries HTTPS and HTTP in turn and joins their
	// errors as text: a timeout is seen in the words too.
	var ne net.Error
	if (errors.As(err, &ne) && ne.Timeout()) || strings.Contains(err.Error(), "timeout awaiting response headers") {
		return fmt.Errorf("%s: %w did not answer in time: %w", ref, ErrRegistry, err)
	}
	return fmt.Errorf("%s: %w: %w", ref, ErrRegistry, err)
}
