// Command echo is a test guest that reports what it receives: a decision
// input as annotations (allow at the token hook, deny 403 elsewhere so the
// host logs them), an event as an audit record whose reason spells out the
// event's vocabulary fields.
package main

import (
	"strconv"
	"strings"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk"
)

func b(v bool) string { return strconv.FormatBool(v) }

func dpop(d abi.DPoP) string {
	return "present=" + b(d.Present) + " valid=" + b(d.Valid) + " result=" + d.Result + " jkt=" + d.JKT +
		" alg=" + d.Alg + " nonce=" + d.NonceStatus
}

func mtls(m abi.MTLS) string {
	return "present=" + b(m.Present) + " result=" + m.Result + " x5t=" + m.Thumbprint
}

func init() {
	sdk.HandleDecision(func(in *abi.DecisionInput) abi.Decision {
		ann := []abi.KV{
			{Key: "endpoint", Value: in.Endpoint}, {Key: "tenant", Value: in.Tenant},
			{Key: "client", Value: in.Client}, {Key: "auth", Value: in.ClientAuthMethod},
			{Key: "grant", Value: in.Grant}, {Key: "subject", Value: in.Subject},
			{Key: "scopes", Value: strings.Join(in.Scopes, ",")}, {Key: "audiences", Value: strings.Join(in.Audiences, ",")},
			{Key: "sc", Value: in.SenderConstraint}, {Key: "dpop", Value: dpop(in.DPoP)}, {Key: "mtls", Value: mtls(in.MTLS)},
			{Key: "remote", Value: b(in.RemoteAddr != "")}, {Key: "cid", Value: b(in.CorrelationID != "")},
		}
		if in.Endpoint == abi.HookToken {
			return abi.Decision{Allow: true, Annotations: ann}
		}
		return abi.Decision{Status: 403, Error: "access_denied", Annotations: ann}
	})
	sdk.HandleEvent(func(ev *abi.Event) error {
		rec := abi.Event{Type: "authority.echo.event", Client: ev.Client, Outcome: ev.Outcome,
			Reason: "type=" + ev.Type + " outcome=" + ev.Outcome + " reason=" + ev.Reason + " sc=" + ev.SenderConstraint +
				" dpop{" + dpop(ev.DPoP) + "} mtls{" + mtls(ev.MTLS) + "}"}
		return sdk.Audit(&rec)
	})
}

func main() {}
