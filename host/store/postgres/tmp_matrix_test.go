package postgres_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"stellaops.org/authority/host/store/postgres"
)

func BenchmarkTmpMatrix(b *testing.B) {
	for _, nb := range []int{1, 2} {
		for _, w := range []time.Duration{0} {
			b.Run(fmt.Sprintf("batchers=%d/wait=%v", nb, w), func(b *testing.B) {
				s := openStore(b, postgres.Options{MaxConns: int32(2 * nb), Batchers: nb, BatchWait: w, BatchMax: 128})
				var seq atomic.Int64
				now := time.Now()
				b.SetParallelism(parallelism)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := s.Put(context.Background(), benchToken("m-"+strconv.FormatInt(seq.Add(1), 10), now)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
