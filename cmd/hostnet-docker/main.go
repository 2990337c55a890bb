// Command hostnet-docker is hostnet's Docker plugin: a libnetwork remote
// network driver and IPAM driver that hand Docker's networks and containers
// to hostnetd (`docker network create -d hostnet --ipam-driver hostnet`).
// It listens on PLUGIN-DIR/NAME.sock, where dockerd finds it; see the
// README's "Use with Docker" and internal/dockerplugin.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/hostnet/hostnet/client"
	"github.com/hostnet/hostnet/internal/dockerplugin"
)

// build is set by the linker (-X main.build=...).
var build = "dev"

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func main() {
	fs := flag.NewFlagSet("hostnet-docker", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: hostnet-docker [OPTIONS]\n\nhostnet-docker serves Docker's network and IPAM plugin protocol on PLUGIN-DIR/NAME.sock\n"+
			"and carries Docker's requests out through hostnetd. Each option may be given as the\nenvironment variable its description names.\n\nOptions:\n")
		fs.PrintDefaults()
	}
	dir := fs.String("plugin-dir", env("HOSTNET_DOCKER_PLUGIN_DIR", dockerplugin.DefaultPluginDir), "the directory dockerd finds plugin sockets in (HOSTNET_DOCKER_PLUGIN_DIR)")
	name := fs.String("name", env("HOSTNET_DOCKER_NAME", "hostnet"), "the driver's name: -d NAME, --ipam-driver NAME (HOSTNET_DOCKER_NAME)")
	socket := fs.String("socket", env("HOSTNET_SOCKET", client.DefaultSocket), "hostnetd's socket (HOSTNET_SOCKET)")
	level := fs.String("log-level", env("HOSTNET_LOG_LEVEL", "info"), "debug, info, warn or error (HOSTNET_LOG_LEVEL)")
	version := fs.Bool("version", false, "print the version and exit")
	_ = fs.Parse(os.Args[1:])
	if *version {
		fmt.Println("hostnet-docker version " + build)
		return
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(os.Stderr, "hostnet-docker: -log-level: %q is not debug, info, warn or error\n", *level)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	path := filepath.Join(*dir, *name+".sock")
	l, err := dockerplugin.Listen(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hostnet-docker: listen on %s: %v\n", path, err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	p := &dockerplugin.Plugin{D: client.New(*socket), Log: log}
	log.Info("serving Docker", "socket", path, "hostnetd", *socket, "build", build)
	if err := p.Serve(ctx, l); err != nil {
		fmt.Fprintf(os.Stderr, "hostnet-docker: %v\n", err)
		os.Exit(1)
	}
}
