package integration

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	mobyclient "github.com/moby/moby/client"
)

// TestServeUnderHostileClients: clients that hold connections without a
// word, send malformed requests, too many header bytes or a huge body are
// refused or dropped, and the server answers another client all the while.
func TestServeUnderHostileClients(t *testing.T) {
	e := newEnv(t)
	sock, c := e.serve(t)
	dial := func() net.Conn {
		conn, err := net.Dial("unix", sock)
		assert.NilError(t, err)
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	answers := func(what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Ping(ctx, mobyclient.PingOptions{})
		assert.Check(t, err, "no answer to another client %s", what)
	}
	// Silent and slow clients, many of them.
	for range 50 {
		dial()
	}
	slow := dial()
	_, err := io.WriteString(slow, "GET /_ping HTTP/1.1\r\nHost: x\r\n")
	assert.NilError(t, err)
	answers("beside 51 silent or slow connections")

	send := func(request string) (int, string) {
		t.Helper()
		conn := dial()
		go io.Copy(conn, strings.NewReader(request))
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	status := func(request string) int { code, _ := send(request); return code }
	assert.Check(t, is.Equal(status("NOT HTTP AT ALL\r\n\r\n"), http.StatusBadRequest))
	assert.Check(t, is.Equal(status("GET /_ping HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 1<<20)+"\r\n\r\n"), http.StatusRequestHeaderFieldsTooLarge))
	huge := `{"Image":"` + strings.Repeat("a", 8<<20) + `"}`
	var req bytes.Buffer
	req.WriteString("POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ")
	req.WriteString(strconv.Itoa(len(huge)) + "\r\n\r\n" + huge)
	code, body := send(req.String())
	assert.Check(t, is.Equal(code, http.StatusBadRequest))
	assert.Check(t, is.Contains(body, "request body too large"))
	answers("after the malformed, oversized and huge requests")
}
