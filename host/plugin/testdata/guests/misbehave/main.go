// Command misbehave is a test guest that misbehaves on request: the
// decision input's Client names the misbehaviour.
package main

import (
	"strings"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk"
)

var sink int

func init() {
	sdk.HandleDecision(func(in *abi.DecisionInput) abi.Decision {
		switch in.Client {
		case "spin":
			for i := 0; ; i++ {
				sink += i
			}
		case "sleep":
			time.Sleep(time.Hour)
		case "panic":
			panic("misbehave: asked to panic")
		case "bad-status":
			return abi.Decision{Status: 200, Error: "ok"}
		case "big-description":
			return abi.Denied(403, "access_denied", strings.Repeat("x", 20000))
		case "grow":
			var keep [][]byte
			for {
				keep = append(keep, make([]byte, 1<<20))
				sink += len(keep)
			}
		case "log-flood":
			for i := 0; i < 1000; i++ {
				println("flood line")
			}
		case "deny":
			return abi.Denied(429, "rate_limited", "slow down")
		}
		return abi.Allowed()
	})
	sdk.HandleEvent(func(ev *abi.Event) error {
		if ev.Type == "authority.test.spin" {
			for i := 0; ; i++ {
				sink += i
			}
		}
		return nil
	})
}

func main() {}
