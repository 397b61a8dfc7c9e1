package abi

import (
	"os"
	"strings"
	"testing"
)

// TestVocabularyIsTheSpec: every word of the vocabulary is in SPEC.md, in
// backquotes, so the document and the constants cannot drift apart.
func TestVocabularyIsTheSpec(t *testing.T) {
	raw, err := os.ReadFile("SPEC.md")
	if err != nil {
		t.Fatal(err)
	}
	spec := string(raw)
	for name, set := range map[string][]string{"DPoPResults": DPoPResults, "NonceStatuses": NonceStatuses,
		"MTLSResults": MTLSResults, "SenderConstraints": SenderConstraints, "Outcomes": Outcomes, "HostEventTypes": HostEventTypes} {
		seen := map[string]bool{}
		for _, v := range set {
			if seen[v] {
				t.Errorf("%s lists %q twice", name, v)
			}
			seen[v] = true
			if !strings.Contains(spec, "`"+v+"`") {
				t.Errorf("%s: %q is not in SPEC.md", name, v)
			}
		}
	}
}
