package abi

import (
	"testing"
	"time"
)

var zzt time.Time

func BenchmarkZZUnixNano(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		zzt = unixNano(int64(i) + 1700000000000000000)
	}
}
