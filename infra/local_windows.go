package infra

import "errors"

// The local provider runs servers as child processes it pauses with SIGSTOP
// and follows through /proc; Windows has neither, so it is refused.
func newLocalProvider(localBinaries) (provider, error) {
	return nil, errors.New("the local provider (host redis-server/postgres processes, paused with SIGSTOP) does not run on Windows: " +
		"use --provider docker with a Linux engine (Docker Desktop, or DOCKER_HOST=tcp://HOST:2376 or ssh://USER@HOST), " +
		"or --provider external with your own servers (--redis ADDR, --postgres DSN)")
}
