// Command staticinit is the init alone in a binary, so that tests can build
// it the way corral is built (static, external linking) and run it.
package main

import (
	"fmt"
	"os"

	_ "github.com/corral-dev/corral/runtime/pid1"
)

func main() {
	fmt.Fprintln(os.Stderr, "staticinit: started without _CORRAL_PID1")
	os.Exit(2)
}
