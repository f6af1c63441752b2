package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// redisLog routes go-redis' own log lines (a failover client reports every
// Sentinel it could not reach while a failover is under way: thousands of
// lines) to slog at debug level, where -v does not show them either; the
// errors themselves reach the history through the calls that failed.
type redisLog struct{}

func (redisLog) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}

func init() { redis.SetLogger(redisLog{}) }
