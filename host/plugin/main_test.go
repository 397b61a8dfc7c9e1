package plugin_test

import (
	"fmt"
	"os"
	"testing"

	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/sdk/sdktest"
)

// guests maps a test guest name to its built module (built once per
// source hash, cached under sdktest.CacheDir).
var guests = map[string]string{}

func TestMain(m *testing.M) {
	for _, g := range []string{"noop", "realistic", "misbehave", "hostcalls", "echo"} {
		path, err := sdktest.BuildModule("./testdata/guests/" + g)
		if err != nil {
			fmt.Fprintf(os.Stderr, "building guest %s: %v\n", g, err)
			os.Exit(1)
		}
		guests[g] = path
		plugin.GuestPaths[g] = path
	}
	os.Exit(m.Run())
}
