// The program the end-to-end tests' containers run: it prints its
// arguments, copies stdin to stdout ("cat"), or says it serves and sleeps
// ("serve").
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
	case len(os.Args) > 1 && os.Args[1] == "serve":
		fmt.Println("serving")
		time.Sleep(time.Hour)
	default:
		fmt.Println("hello from", os.Args)
	}
}
