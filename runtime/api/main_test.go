package api_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/corral-dev/corral/runtime/api"
)

// peerEnv, when set to a socket path, makes the test binary a client that
// lists the services on that socket, prints how it went and exits: the
// peer check tests run it as another user.
const peerEnv = "CORRAL_API_TEST_PEER"

func TestMain(m *testing.M) {
	if socket := os.Getenv(peerEnv); socket != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := api.NewClient(socket).List(ctx)
		fmt.Printf("%s\t%v\n", className(err), err)
		return
	}
	os.Exit(m.Run())
}

// className names the class err wraps: "ok" for nil, "none" for none.
func className(err error) string {
	if err == nil {
		return "ok"
	}
	for _, c := range []error{api.ErrNotFound, api.ErrInvalid, api.ErrConflict, api.ErrUnavailable, api.ErrForbidden} {
		if errors.Is(err, c) {
			return c.Error()
		}
	}
	return "none"
}

// testContext ends when the test does, or after 20s.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
