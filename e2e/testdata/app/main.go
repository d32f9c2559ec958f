// The program the end-to-end tests' containers run: it prints its
// arguments, copies stdin to stdout ("cat"), says it serves and sleeps
// ("serve"), or prints a file, writing it first when it is not there
// ("keep PATH TEXT").
package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
	switch {
	case len(os.Args) > 1 && os.Args[1] == "cat":
		io.Copy(os.Stdout, os.Stdin)
	case len(os.Args) > 3 && os.Args[1] == "keep":
		if _, err := os.Stat(os.Args[2]); os.IsNotExist(err) {
			if err := os.WriteFile(os.Args[2], []byte(os.Args[3]+"\n"), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		data, err := os.ReadFile(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Stdout.Write(data)
	case len(os.Args) > 1 && os.Args[1] == "serve":
		fmt.Println("serving")
		time.Sleep(time.Hour)
	default:
		fmt.Println("hello from", os.Args)
	}
}
