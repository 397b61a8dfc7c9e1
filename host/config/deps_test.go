package config_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The packages that only read the configuration do not compile the
// plugin runtime: host/config takes the plugin configuration from the
// leaf package host/pluginspec, never from host/plugin.
func TestConfigReadersDoNotImportThePluginRuntime(t *testing.T) {
	pkgs := []string{"stellaops.org/authority/host/config", "stellaops.org/authority/host/oauth", "stellaops.org/authority/host/server"}
	out, err := exec.Command("go", append([]string{"list", "-deps"}, pkgs...)...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "stellaops.org/authority/host/plugin" || strings.HasPrefix(dep, "github.com/tetratelabs/wazero") {
			t.Fatalf("%s depends on %s", strings.Join(pkgs, ", "), dep)
		}
	}
}
