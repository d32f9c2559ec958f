// Package testcmd runs the commands tests drive: imgprune's, the docker
// CLI's.
package testcmd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/imgprune/imgprune/internal/testctrd"
)

// Run runs cmd and returns its stdout, its stderr and its exit code; err is
// set only when it could not run at all.
func Run(cmd *exec.Cmd) (stdout, stderr string, code int, err error) {
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if exit, ok := errors.AsType[*exec.ExitError](err); ok {
		return out.String(), errOut.String(), exit.ExitCode(), nil
	}
	return out.String(), errOut.String(), 0, err
}

// DockerCLI is the docker CLI tests drive: IMGPRUNE_DOCKER, else the one
// hack/install-docker-cli.sh put under _output/bin (make test runs it),
// else the one on PATH.
func DockerCLI() (string, error) {
	if bin := os.Getenv("IMGPRUNE_DOCKER"); bin != "" {
		return bin, nil
	}
	if repo, err := testctrd.RepoRoot(); err == nil {
		bin := filepath.Join(repo, "_output", "bin", "docker")
		if _, err := os.Stat(bin); err == nil {
			return bin, nil
		}
	}
	bin, err := exec.LookPath("docker")
	if err != nil {
		return "", fmt.Errorf("no docker CLI: run hack/install-docker-cli.sh")
	}
	return bin, nil
}
