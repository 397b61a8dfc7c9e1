package plugin_test

import (
	"context"
	"fmt"
	"testing"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/plugin"
)

func TestDebugCounts(t *testing.T) {
	m := newManager(t, map[string][]plugin.Spec{"a": {spec(t, "noop")}}, plugin.Deps{})
	in := realisticInput()
	m.Decide(context.Background(), "a", in)
	before := map[string]int64{}
	for k, v := range plugin.DebugCounts {
		before[k] = v.Load()
	}
	for i := 0; i < 1000; i++ {
		m.Decide(context.Background(), "a", in)
	}
	for k, v := range plugin.DebugCounts {
		if d := v.Load() - before[k]; d > 0 {
			fmt.Println(k, d)
		}
	}
	_ = abi.HookToken
}
