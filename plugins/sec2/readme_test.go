package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"stellaops.org/authority/host/plugin"
)

// TestREADMEExample: the example tenant of README.md is a valid plugin
// spec whose configuration SEC2 accepts, with the grants the module needs.
func TestREADMEExample(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "### Example tenant")
	if !ok {
		t.Fatal("no example section")
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	if !ok {
		t.Fatal("no yaml block")
	}
	block, _, _ := strings.Cut(rest, "```")
	var doc struct {
		Tenants []struct {
			ID      string        `yaml:"id"`
			Plugins []plugin.Spec `yaml:"plugins"`
		} `yaml:"tenants"`
	}
	if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Tenants) != 1 || len(doc.Tenants[0].Plugins) != 1 {
		t.Fatalf("%+v", doc)
	}
	s := doc.Tenants[0].Plugins[0]
	s.SHA256 = strings.Repeat("0", 64) // the placeholder
	if err := s.Validate("tenants[0].plugins[0]"); err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.Grants, ",") != strings.Join(grants, ",") || strings.Join(s.Hooks, ",") != "events" {
		t.Fatalf("grants %v hooks %v", s.Grants, s.Hooks)
	}
	cfg, err := json.Marshal(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.network != networkTruncate || c.annotations || len(c.properties) != 2 || len(c.events) != 3 {
		t.Fatalf("parsed %+v", c)
	}
}
