// Command exiter prints its arguments and exits with the code in $EXIT_CODE:
// the workload of the real-node tests. With $CHECK_API set it first asks the
// API server for its version the way in-cluster clients do (the kubernetes
// Service's address from the environment, the service account's CA and
// token) and prints the answer; with $SLEEP (a Go duration) it waits before
// it exits.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
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
