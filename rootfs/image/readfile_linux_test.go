package image_test

import (
	"strings"
	"testing"

	"github.com/corral-dev/corral/rootfs/image"
	. "github.com/corral-dev/corral/rootfs/image/imagetest"
)

// TestReadFileThroughTheLayers: a file of the image's root as the overlay
// would show it, without mounting: the top layer wins, whiteouts and
// opaque directories hide what is below, and nothing is followed out of
// a layer.
func TestReadFileThroughTheLayers(t *testing.T) {
	s := open(t)
	c := NewContent()
	d := c.Image(t, Spec{Layers: []Layer{
		GzipLayer(t, Dir("etc"), File("etc/passwd", "old"), File("etc/group", "g"), File("etc/motd", "m"),
			Dir("srv"), File("srv/a", "a"), Dir("data"), File("data/x", "x"), Symlink("link", "/etc/shadow"), Dir("lib"), File("lib/f", "f")),
		GzipLayer(t, Dir("etc"), File("etc/passwd", "new"), Whiteout("etc/motd"), Opaque("srv"), Dir("srv"), File("srv/b", "b"),
			Whiteout("data"), Symlink("lib2", "lib"), Dir("evil"), Symlink("evil/passwd", "/etc/shadow")),
	}})
	img, err := s.Import(ctx, layout(t, c, Named(d, "app:1")), image.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want, err string }{
		{"/etc/passwd", "new", ""},
		{"etc/group", "g", ""},    // relative: from the root all the same
		{"/etc/motd", "", ""},     // whited out
		{"/srv/a", "", ""},        // under an opaque dir
		{"/srv/b", "b", ""},       // the opaque dir's own
		{"/data/x", "", ""},       // its directory whited out
		{"/nothing/here", "", ""}, // missing
		{"/link", "", "not a regular file"},
		{"/evil/passwd", "", "not a regular file"},
		{"/lib2/f", "", "a directory on the way is a symlink"},
		{"/lib/f", "f", ""},
		{"/etc/../etc/passwd", "new", ""},
		{"/", "", "is not a file"},
	} {
		data, err := img.ReadFile(tc.path)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: %q, %v; want an error with %q", tc.path, data, err, tc.err)
		case tc.err == "" && (err != nil || string(data) != tc.want):
			t.Errorf("%s: %q, %v; want %q", tc.path, data, err, tc.want)
		}
	}
}
