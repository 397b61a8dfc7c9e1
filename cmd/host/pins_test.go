package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/sdk/sdktest"
)

var updatePins = flag.Bool("update-pins", false, "rewrite the plugin digests pinned in examples/authority.yaml (make pin)")

// The example configuration pins the digest of every plugin it loads from
// bin/plugins, and `make build` must produce exactly those bytes, or
// `make run` refuses to start. Guests build reproducibly (the Makefile's
// GUEST_FLAGS, sdktest's build), so the digest is a function of the
// source and the Go version; after a change to either, `make pin`
// rewrites the pins.
func TestExamplePluginPins(t *testing.T) {
	path := filepath.Join("..", "..", "examples", "authority.yaml")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	pinned := 0
	for _, tn := range cfg.Tenants {
		for _, s := range tn.Plugins {
			name, ok := strings.CutPrefix(filepath.ToSlash(s.Path), "bin/plugins/")
			if !ok || !strings.HasSuffix(name, ".wasm") {
				t.Errorf("tenant %s plugin %s: path %q is not a module `make build` writes (bin/plugins/NAME.wasm)", tn.ID, s.Name, s.Path)
				continue
			}
			name = strings.TrimSuffix(name, ".wasm")
			pkg := ""
			for _, dir := range []string{"plugins", filepath.Join("examples", "plugins")} {
				if st, err := os.Stat(filepath.Join("..", "..", dir, name)); err == nil && st.IsDir() {
					pkg = filepath.Join("..", "..", dir, name)
					break
				}
			}
			if pkg == "" {
				t.Errorf("tenant %s: no source for bin/plugins/%s.wasm under plugins/ or examples/plugins/", tn.ID, name)
				continue
			}
			b, err := os.ReadFile(sdktest.Build(t, pkg))
			if err != nil {
				t.Fatal(err)
			}
			pinned++
			if got := plugin.Digest(b); got != s.SHA256 {
				if *updatePins {
					text = strings.ReplaceAll(text, s.SHA256, got)
					t.Logf("tenant %s plugin %s: pinned %s", tn.ID, s.Name, got)
					continue
				}
				t.Errorf("tenant %s plugin %s: examples/authority.yaml pins sha256 %s, the build gives %s: run `make pin`", tn.ID, s.Name, s.SHA256, got)
			}
		}
	}
	if pinned == 0 {
		t.Error("the example configuration loads no plugin: the SEC3 demo tenant is gone")
	}
	if *updatePins && text != string(raw) {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
