package plugin_test

import (
	"os"
	"regexp"
	"slices"
	"testing"

	"stellaops.org/authority/host/plugin"
)

// The host function table (plugin.HostFunctions), from which the import
// check, the run-time grant check and `plugin inspect` read, is the table
// of abi/SPEC.md §5: the same functions with the same grants.
func TestHostFunctionTableMatchesTheSpec(t *testing.T) {
	raw, err := os.ReadFile("../../abi/SPEC.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| `\\([^`]*\\)[^`]*` \\| `([a-z]+)` \\|")
	var spec, host []string
	for _, m := range row.FindAllStringSubmatch(string(raw), -1) {
		spec = append(spec, m[1]+"="+m[2])
	}
	for _, f := range plugin.HostFunctions {
		host = append(host, f.Name+"="+f.Grant)
		if g, ok := plugin.GrantFor(f.Name); !ok || g != f.Grant || !plugin.IsGrant(g) {
			t.Errorf("%s: GrantFor %q %v", f.Name, g, ok)
		}
	}
	slices.Sort(spec)
	slices.Sort(host)
	if !slices.Equal(spec, host) {
		t.Fatalf("SPEC.md §5 %v\nhost       %v", spec, host)
	}
	if _, ok := plugin.GrantFor("fd_write"); ok {
		t.Fatal("a function the host does not offer has a grant")
	}
}
