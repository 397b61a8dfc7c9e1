// Command hostcalls is a test guest that calls every host function and
// reports the results as annotations.
package main

import (
	"strconv"
	"strings"
	"time"
	"unsafe"

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
		// counter_incr_many: a read of the counter above and an increment
		// of another key in one call; then batches the host must refuse
		// whole.
		var res [2]sdk.CounterResult
		if !strings.Contains(string(sdk.Config()), `"many":true`) {
			// Not asked to (its keys would count against a quota test's).
		} else if err := sdk.CounterIncrMany([]sdk.CounterOp{{Key: "client:" + in.Client}, {Key: "many:" + in.Client, Delta: 2, Window: time.Minute}}, res[:]); err != nil {
			add("many.err", err.Error())
		}
		add("many", strconv.FormatInt(res[0].Value, 10)+","+strconv.FormatInt(res[1].Value, 10)+","+strconv.FormatInt(int64(res[1].TTL/time.Second), 10))
		var bad [1]sdk.CounterResult
		add("many.badkey", errText(sdk.CounterIncrMany([]sdk.CounterOp{{Key: "has space", Delta: 1, Window: time.Minute}}, bad[:])))
		add("many.nowindow", errText(sdk.CounterIncrMany([]sdk.CounterOp{{Key: "k", Delta: 1}}, bad[:])))
		var ops, out [17 * 24]byte
		add("many.raw", strings.Join([]string{
			strconv.Itoa(int(rawIncrMany(unsafe.Pointer(&ops[0]), 0, unsafe.Pointer(&out[0])))),
			strconv.Itoa(int(rawIncrMany(unsafe.Pointer(&ops[0]), 17, unsafe.Pointer(&out[0])))),
			strconv.Itoa(int(rawIncrMany(unsafe.Pointer(&ops[0]), 1, unsafe.Add(unsafe.Pointer(&out[0]), 0x7ffffff0)))),
		}, ","))
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

//go:wasmimport authority counter_incr_many
func rawIncrMany(ops unsafe.Pointer, n uint32, out unsafe.Pointer) int32

func errText(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

func main() {}
