// Command pause is the entrypoint of the images the Kubernetes-node tests
// run, as pod sandbox (pause) image and as workload: it prints its
// arguments, if any, as one line on standard output, then sleeps until
// SIGTERM or SIGINT and exits 0. As PID 1 of a pod it also reaps the
// zombies it inherits, as Kubernetes' pause does.
//
// Build it static, to be the only file of an image:
//
//	CGO_ENABLED=0 go build -trimpath -ldflags=-s -o pause ./hack/pause
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	if len(os.Args) > 1 {
		fmt.Println(strings.Join(os.Args[1:], " "))
	}
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			return
		}
		reap()
	}
}

// reap collects every child that has exited. Signals coalesce, so one
// SIGCHLD may stand for several.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
