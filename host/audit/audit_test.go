package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// TestLogSinkKeepsPluginRecordsApart: a host record is logged as
// authority.audit with source "host"; a record with a plugin source, even
// of a host type, is logged as authority.audit.plugin with that source.
func TestLogSinkKeepsPluginRecordsApart(t *testing.T) {
	var buf bytes.Buffer
	s := LogSink{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}
	s.Record(context.Background(), Event{Type: "authority.token.issued", Client: "c1"})
	s.Record(context.Background(), Event{Source: "plugin:sec2", Type: "authority.token.issued", Client: "victim"})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines", len(lines))
	}
	want := [][3]string{{"authority.audit", "host", "c1"}, {"authority.audit.plugin", "plugin:sec2", "victim"}}
	for i, l := range lines {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if r["msg"] != want[i][0] || r["source"] != want[i][1] || r["client"] != want[i][2] {
			t.Errorf("line %d: %s, want msg %s source %s", i, l, want[i][0], want[i][1])
		}
	}
}
