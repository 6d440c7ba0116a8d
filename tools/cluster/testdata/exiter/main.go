// Command exiter prints its arguments and exits with the code in $EXIT_CODE:
// the workload of the real-node tests.
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

func main() {
	fmt.Println(strings.Join(os.Args[1:], " "))
	code, _ := strconv.Atoi(os.Getenv("EXIT_CODE"))
	os.Exit(code)
}
