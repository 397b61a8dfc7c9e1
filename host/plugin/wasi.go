package plugin

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"log/slog"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// WASI errno values used by the subset.
const (
	errnoSuccess = 0
	errnoBadf    = 8
	errnoFault   = 21
	errnoInval   = 28
)

// instantiateWASI provides, as module wasi_snapshot_preview1, exactly the
// functions a stock Go wasip1 guest imports, answering as a process with
// no arguments, no environment, no preopened directories and no files:
// stdout and stderr go to the rate-limited guest log, the realtime clock
// is the injected clock for plugins granted "clock" and the fixed epoch
// for the others (see guestRealtime), the monotonic clock is the host's,
// random bytes come from the host CSPRNG, poll_oneoff sleeps on
// the host under the call deadline, proc_exit ends the instance. Nothing
// else of WASI is reachable, because nothing else is defined.
func instantiateWASI(ctx context.Context, rt wazero.Runtime, start time.Time) error {
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	b := rt.NewHostModuleBuilder(WASIModule)
	// Every WASI call costs the guest's budget and refuses to start after
	// the call deadline, like the authority host functions.
	def := func(name string, fn api.GoModuleFunc, params []api.ValueType, results ...api.ValueType) {
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
			if inst := instanceFrom(ctx); inst != nil {
				inst.chargeHost()
			}
			fn(ctx, mod, stack)
		}), params, results).Export(name)
	}
	ret := func(stack []uint64, errno uint32) { stack[0] = uint64(errno) }
	zeroSizes := func(_ context.Context, mod api.Module, stack []uint64) {
		m := mod.Memory()
		if !m.WriteUint32Le(uint32(stack[0]), 0) || !m.WriteUint32Le(uint32(stack[1]), 0) {
			ret(stack, errnoFault)
			return
		}
		ret(stack, errnoSuccess)
	}
	nothing := func(_ context.Context, _ api.Module, stack []uint64) { ret(stack, errnoSuccess) }
	def("args_sizes_get", zeroSizes, []api.ValueType{i32, i32}, i32)
	def("args_get", nothing, []api.ValueType{i32, i32}, i32)
	def("environ_sizes_get", zeroSizes, []api.ValueType{i32, i32}, i32)
	def("environ_get", nothing, []api.ValueType{i32, i32}, i32)
	def("sched_yield", nothing, nil, i32)

	def("clock_time_get", func(ctx context.Context, mod api.Module, stack []uint64) {
		var ns int64
		switch uint32(stack[0]) {
		case 0: // realtime: the injected clock with the clock grant, else the epoch
			ns = guestRealtime(ctx)
		case 1: // monotonic: host monotonic time since runtime start
			ns = int64(time.Since(start)) + 1
		default:
			ret(stack, errnoInval)
			return
		}
		if !mod.Memory().WriteUint64Le(uint32(stack[2]), uint64(ns)) {
			ret(stack, errnoFault)
			return
		}
		ret(stack, errnoSuccess)
	}, []api.ValueType{i32, i64, i32}, i32)

	def("fd_write", func(ctx context.Context, mod api.Module, stack []uint64) {
		fd, iovs, n, resultPtr := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
		if fd != 1 && fd != 2 {
			ret(stack, errnoBadf)
			return
		}
		m := mod.Memory()
		inst := instanceFrom(ctx)
		var total uint32
		var line []byte
		max := 1024
		if inst != nil {
			max = inst.p.opts.GuestLogLineBytes
		}
		for i := uint32(0); i < n; i++ {
			base, ok1 := m.ReadUint32Le(iovs + i*8)
			l, ok2 := m.ReadUint32Le(iovs + i*8 + 4)
			if !ok1 || !ok2 {
				ret(stack, errnoFault)
				return
			}
			data, ok := m.Read(base, l)
			if !ok {
				ret(stack, errnoFault)
				return
			}
			if room := max - len(line); room > 0 {
				if len(data) > room {
					data = data[:room]
				}
				line = append(line, data...)
			}
			total += l
		}
		if inst != nil && len(line) > 0 {
			level := slog.LevelInfo
			if fd == 2 {
				level = slog.LevelWarn
			}
			inst.p.guestLog(ctx, level, "fd", string(line))
		}
		if !m.WriteUint32Le(resultPtr, total) {
			ret(stack, errnoFault)
			return
		}
		ret(stack, errnoSuccess)
	}, []api.ValueType{i32, i32, i32, i32}, i32)

	def("fd_close", func(_ context.Context, _ api.Module, stack []uint64) {
		ret(stack, errnoBadf)
	}, []api.ValueType{i32}, i32)

	def("fd_fdstat_get", func(_ context.Context, mod api.Module, stack []uint64) {
		fd, ptr := uint32(stack[0]), uint32(stack[1])
		if fd > 2 {
			ret(stack, errnoBadf)
			return
		}
		var st [24]byte
		st[0] = 2                // filetype character_device
		rights := uint64(1 << 6) // fd_write
		if fd == 0 {
			rights = 1 << 1 // fd_read
		}
		binary.LittleEndian.PutUint64(st[8:], rights)
		if !mod.Memory().Write(ptr, st[:]) {
			ret(stack, errnoFault)
			return
		}
		ret(stack, errnoSuccess)
	}, []api.ValueType{i32, i32}, i32)

	def("fd_fdstat_set_flags", func(_ context.Context, _ api.Module, stack []uint64) {
		if uint32(stack[0]) > 2 {
			ret(stack, errnoBadf)
			return
		}
		ret(stack, errnoSuccess)
	}, []api.ValueType{i32, i32}, i32)

	// No preopened directories: EBADF ends the guest's preopen scan at fd 3.
	def("fd_prestat_get", func(_ context.Context, _ api.Module, stack []uint64) {
		ret(stack, errnoBadf)
	}, []api.ValueType{i32, i32}, i32)
	def("fd_prestat_dir_name", func(_ context.Context, _ api.Module, stack []uint64) {
		ret(stack, errnoBadf)
	}, []api.ValueType{i32, i32, i32}, i32)

	def("random_get", func(_ context.Context, mod api.Module, stack []uint64) {
		buf, n := uint32(stack[0]), uint32(stack[1])
		if n > 1<<20 {
			ret(stack, errnoInval)
			return
		}
		view, ok := mod.Memory().Read(buf, n)
		if !ok {
			ret(stack, errnoFault)
			return
		}
		_, _ = rand.Read(view)
		ret(stack, errnoSuccess)
	}, []api.ValueType{i32, i32}, i32)

	def("proc_exit", func(ctx context.Context, mod api.Module, stack []uint64) {
		code := uint32(stack[0])
		_ = mod.CloseWithExitCode(ctx, code)
		panic(sys.NewExitError(code))
	}, []api.ValueType{i32})

	def("poll_oneoff", pollOneoff(start), []api.ValueType{i32, i32, i32, i32}, i32)

	_, err := b.Instantiate(ctx)
	return err
}

// guestRealtime is the wall time a guest sees (WASI realtime clock,
// absolute realtime poll_oneoff subscriptions), in Unix nanoseconds: the
// injected Deps.Clock for a plugin granted "clock", and the fixed epoch 0
// (1970-01-01T00:00:00Z) for every other plugin and outside a call. A
// plugin that may depend on the date must say so in its grants, where a
// reviewer sees it; monotonic time stays available to all (the Go runtime
// needs it) and reveals only durations.
func guestRealtime(ctx context.Context) int64 {
	if inst := instanceFrom(ctx); inst != nil && inst.p.grants&bitClock != 0 {
		return inst.p.deps.Clock.Now().UnixNano()
	}
	return 0
}

// pollOneoff answers fd subscriptions at once with EBADF (the guest has no
// pollable files) and sleeps for the earliest clock subscription on the
// host, and ends the call when the call deadline comes first: a guest
// sleeping in time.Sleep cannot outlive its deadline.
func pollOneoff(start time.Time) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) { pollOneoffAt(ctx, mod, stack, start) }
}

func pollOneoffAt(ctx context.Context, mod api.Module, stack []uint64, start time.Time) {
	in, out, nsubs, neventsPtr := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
	m := mod.Memory()
	if nsubs == 0 || nsubs > 1024 {
		stack[0] = errnoInval
		return
	}
	subs, ok := m.Read(in, nsubs*48)
	if !ok {
		stack[0] = errnoFault
		return
	}
	if _, ok := m.Read(out, nsubs*32); !ok {
		stack[0] = errnoFault
		return
	}
	var events uint32
	writeEvent := func(userdata uint64, errno uint16, typ byte) {
		var ev [32]byte
		binary.LittleEndian.PutUint64(ev[0:], userdata)
		binary.LittleEndian.PutUint16(ev[8:], errno)
		ev[10] = typ
		m.Write(out+events*32, ev[:])
		events++
	}
	sleep := time.Duration(-1)
	var sleepUser uint64
	var fdEvents bool
	now := time.Now()
	for i := uint32(0); i < nsubs; i++ {
		s := subs[i*48 : i*48+48]
		userdata := binary.LittleEndian.Uint64(s[0:])
		switch tag := s[8]; tag {
		case 0: // clock
			timeout := int64(binary.LittleEndian.Uint64(s[24:]))
			if binary.LittleEndian.Uint16(s[40:])&1 != 0 { // abstime
				if binary.LittleEndian.Uint32(s[16:]) == 0 {
					timeout -= guestRealtime(ctx) // the guest's realtime clock, not the host's
				} else {
					timeout -= int64(now.Sub(start)) + 1 // clock_time_get's monotonic origin
				}
			}
			d := time.Duration(max(timeout, 0))
			if sleep < 0 || d < sleep {
				sleep, sleepUser = d, userdata
			}
		default: // fd_read, fd_write: nothing is pollable
			writeEvent(userdata, errnoBadf, tag)
			fdEvents = true
		}
	}
	if !fdEvents && sleep >= 0 {
		if sleep > 0 {
			// Sleep on the host, never past the call deadline: a guest that
			// asks for longer is stopped when the deadline comes.
			if dl, ok := ctx.Deadline(); ok {
				if left := time.Until(dl); left < sleep {
					time.Sleep(max(left, 0))
					panic(sys.NewExitError(sys.ExitCodeDeadlineExceeded))
				}
			}
			time.Sleep(sleep)
		}
		writeEvent(sleepUser, errnoSuccess, 0)
	}
	if !m.WriteUint32Le(neventsPtr, events) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}
