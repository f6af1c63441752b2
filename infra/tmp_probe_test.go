package infra

import (
	"log/slog"
	"os"
	"testing"
	"time"
)

func TestProbeUp(t *testing.T) {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	for range 3 {
		s := time.Now()
		env := upLocal(t, Spec{Nodes: Nodes(1, 1)})
		t.Log("up", time.Since(s))
		env.Close(t.Context())
	}
}
