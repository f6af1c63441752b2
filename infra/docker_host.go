package infra

// Where the docker engine runs, and so where the ports it publishes are
// reached. testcontainers-go finds the engine as the docker CLI does
// (DOCKER_HOST, docker context, ~/.testcontainers.properties, the default
// socket). With a unix socket the engine runs on this host: ports are
// published on 127.0.0.1 and dialled there. With DOCKER_HOST=tcp://HOST:PORT
// the engine may run on another machine, whose published ports are reached
// at HOST (or at $TESTCONTAINERS_HOST_OVERRIDE, testcontainers' own override
// for the address of published ports): a loopback HOST (an ssh tunnel, a
// local forwarder) publishes on that loopback address; any other HOST
// publishes on every interface of the docker host (0.0.0.0), since the
// engine cannot tell which of its addresses faultline reaches.
//
// Per-pair cuts (paircut_docker.go) enter a container's network namespace
// with nsenter: they need the engine on this host (RemoteDockerHost refuses
// them up front when DOCKER_HOST names another machine, and the peer net
// probes for the container's process before the load starts).

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
)

// EnvDockerHost and EnvDockerHostOverride are the variables that point
// faultline (through testcontainers-go) at a docker engine, and at the
// address its published ports are reached on.
const (
	EnvDockerHost         = "DOCKER_HOST"
	EnvDockerHostOverride = "TESTCONTAINERS_HOST_OVERRIDE"
)

// dockerEndpoint is how faultline reaches the ports an engine publishes.
type dockerEndpoint struct {
	daemon   string     // the engine's address, as the client uses it (unix:///var/run/docker.sock)
	dialHost string     // host of every published port's address
	bindIP   netip.Addr // HostIP of the port bindings
}

// remote says whether the published ports are reached over the network
// (not on this host's loopback).
func (e dockerEndpoint) remote() bool { return !e.bindIP.IsLoopback() }

// resolveDockerEndpoint computes where the ports published by the engine at
// daemon (the client's DaemonHost: unix://…, tcp://host:port) are reached;
// override is $TESTCONTAINERS_HOST_OVERRIDE ("" = unset).
func resolveDockerEndpoint(daemon, override string) (dockerEndpoint, error) {
	ep := dockerEndpoint{daemon: daemon}
	host := override
	if host == "" {
		u, err := url.Parse(daemon)
		if err != nil {
			return ep, fmt.Errorf("docker engine address %q: %w", daemon, err)
		}
		switch u.Scheme {
		case "unix", "npipe", "":
			host = "127.0.0.1"
		case "tcp", "http", "https":
			host = u.Hostname()
		default:
			return ep, fmt.Errorf("docker engine address %q: scheme %s is not supported (use unix:// or tcp://; for ssh, forward the engine's socket to a local tcp port)", daemon, u.Scheme)
		}
	}
	if host == "" {
		return ep, fmt.Errorf("docker engine address %q names no host", daemon)
	}
	ep.dialHost = host
	ep.bindIP = netip.IPv4Unspecified()
	if strings.EqualFold(host, "localhost") {
		ep.dialHost, ep.bindIP = "127.0.0.1", netip.MustParseAddr("127.0.0.1")
	} else if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		ep.bindIP = ip
	}
	return ep, nil
}

// publishAddr is the address faultline dials a port published on hostPort.
func (e dockerEndpoint) publishAddr(hostPort string) string {
	return net.JoinHostPort(e.dialHost, hostPort)
}

// RemoteDockerHost reports whether $DOCKER_HOST (or, when set,
// $TESTCONTAINERS_HOST_OVERRIDE) names a docker engine on another machine:
// a tcp address whose host is not a loopback address. It only reads the
// environment (no connection): a loopback tcp address may still be a tunnel
// to another machine, which the docker provider finds out once its
// containers run.
func RemoteDockerHost() (remote bool, where string) {
	daemon := os.Getenv(EnvDockerHost)
	override := os.Getenv(EnvDockerHostOverride)
	if daemon == "" && override == "" {
		return false, ""
	}
	if daemon == "" {
		daemon = "unix:///var/run/docker.sock"
	}
	ep, err := resolveDockerEndpoint(daemon, override)
	if err != nil {
		return false, ""
	}
	if !ep.remote() {
		return false, ""
	}
	where = EnvDockerHost + "=" + daemon
	if override != "" {
		where += ", " + EnvDockerHostOverride + "=" + override
	}
	return true, where
}
