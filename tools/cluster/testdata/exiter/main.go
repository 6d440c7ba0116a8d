// Command exiter prints its arguments and exits with the code in $EXIT_CODE:
// the workload of the real-node tests. With $CHECK_API set it first asks the
// API server for its version the way in-cluster clients do (the kubernetes
// Service's address from the environment, the service account's CA and
// token) and prints the answer; with $SLEEP (a Go duration) it waits before
// it exits.
//
// For the NetworkPolicy tests: with $DIAL_AT_START (host:port) it first dials
// that address over TCP for two seconds, printing each change of outcome and
// when it happened; with $LISTEN (host:port) it then serves GET
// /dial?addr=host:port[&timeout=duration], which dials the address from
// inside the pod and answers "ok", "refused", "timeout" or "error: ...",
// until it is killed.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	fmt.Println(strings.Join(os.Args[1:], " "))
	if os.Getenv("CHECK_API") != "" {
		if err := checkAPI(); err != nil {
			fmt.Println("api:", err)
			os.Exit(4)
		}
	}
	if addr := os.Getenv("DIAL_AT_START"); addr != "" {
		dialAtStart(addr, 2*time.Second)
	}
	if addr := os.Getenv("LISTEN"); addr != "" {
		http.HandleFunc("/dial", func(w http.ResponseWriter, r *http.Request) {
			timeout, err := time.ParseDuration(r.URL.Query().Get("timeout"))
			if err != nil {
				timeout = time.Second
			}
			fmt.Fprintln(w, dial(r.URL.Query().Get("addr"), timeout))
		})
		fmt.Println("listening on", addr)
		fmt.Println((&http.Server{Addr: addr, ReadHeaderTimeout: 10 * time.Second}).ListenAndServe())
		os.Exit(5)
	}
	if d, err := time.ParseDuration(os.Getenv("SLEEP")); err == nil {
		time.Sleep(d)
	}
	code, _ := strconv.Atoi(os.Getenv("EXIT_CODE"))
	os.Exit(code)
}

func checkAPI() error {
	ca, err := os.ReadFile(saDir + "/ca.crt")
	if err != nil {
		return err
	}
	token, err := os.ReadFile(saDir + "/token")
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	url := "https://" + net.JoinHostPort(os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")) + "/version"
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("api %s %d %s\n", url, resp.StatusCode, strings.Join(strings.Fields(string(body)), " "))
	return nil
}

// dial connects to addr over TCP and says how that went: "ok", "refused"
// (rejected), "timeout" (dropped) or "error: ...".
func dial(addr string, timeout time.Duration) string {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	switch {
	case err == nil:
		conn.Close()
		return "ok"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case os.IsTimeout(err):
		return "timeout"
	default:
		return "error: " + err.Error()
	}
}

// dialAtStart dials addr again and again for d and prints every change of
// outcome: "dial-at-start ADDR RESULT after DURATION", the duration counted
// from the first attempt, whose wall-clock time the first line also gives.
func dialAtStart(addr string, d time.Duration) {
	start := time.Now()
	last := ""
	n := 0
	for time.Since(start) < d {
		res := dial(addr, 200*time.Millisecond)
		n++
		if res != last {
			fmt.Printf("dial-at-start %s %s after %s (attempt %d, first at %s)\n",
				addr, res, time.Since(start).Round(time.Millisecond), n, start.UTC().Format(time.RFC3339Nano))
			last = res
		}
		time.Sleep(10 * time.Millisecond)
	}
}
