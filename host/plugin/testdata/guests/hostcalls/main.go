// Command hostcalls is a test guest that calls every host function and
// reports the results as annotations.
package main

import (
	"strconv"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk"
)

func init() {
	sdk.HandleDecision(func(in *abi.DecisionInput) abi.Decision {
		var ann []abi.KV
		add := func(k, v string) { ann = append(ann, abi.KV{Key: k, Value: v}) }
		sdk.Log(sdk.LevelInfo, "deciding for "+in.Client)
		if err := sdk.Metric("decisions", 1); err != nil {
			add("metric.err", err.Error())
		}
		n, ttl, err := sdk.CounterIncr("client:"+in.Client, 1, time.Minute)
		if err != nil {
			add("counter.err", err.Error())
		}
		add("counter", strconv.FormatInt(n, 10))
		add("counter.ttl", strconv.FormatInt(int64(ttl/time.Second), 10))
		prev, ok, err := sdk.KVGet("last")
		if err != nil {
			add("kv.err", err.Error())
		}
		if ok {
			add("kv.prev", string(prev))
		}
		if err := sdk.KVSet("last", []byte(in.Client), time.Hour); err != nil {
			add("kvset.err", err.Error())
		}
		p, err := sdk.Pseudonymize(in.Subject)
		if err != nil {
			add("pseudonym.err", err.Error())
		}
		add("pseudonym", p)
		add("now", strconv.FormatInt(sdk.Now().Unix(), 10))
		add("config", string(sdk.Config()))
		add("tenant", in.Tenant)
		ev := abi.Event{Type: "authority.token.checked", Tenant: "forged", Client: in.Client, Outcome: "success"}
		if err := sdk.Audit(&ev); err != nil {
			add("audit.err", err.Error())
		}
		if n > 3 {
			return abi.Decision{Status: 429, Error: "rate_limited", RetryAfter: int(ttl / time.Second), Annotations: ann}
		}
		return abi.Decision{Allow: true, Annotations: ann}
	})
}

func main() {}
