// Command hostnet is the command line of hostnetd: docker-network-like verbs
// for networks, endpoints and namespaces, `apply -f` for HCN JSON, and `run`.
package main

import (
	"os"

	"github.com/hostnet/hostnet/client"
	"github.com/hostnet/hostnet/internal/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, client.New))
}
