// An OpenAI-compatible streaming upstream for bench/http_client.py: POST /v1/chat/completions
// answers the number of chunks the x-bench-tokens header asks for, then "data: [DONE]". With
// -tls it serves HTTPS with a fresh self-signed certificate for 127.0.0.1 (written to -cert, for
// the client to trust) and negotiates HTTP/2 or HTTP/1.1 by ALPN, so both can be measured.
// It counts the distinct client connections that carried requests: GET /stats answers
// {"sockets": n, "h2": n} (h2: those speaking HTTP/2); POST /reset forgets them.
// It prints its port on the first line of stdout.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

var (
	mu    sync.Mutex
	peers = map[string]bool{} // client address -> speaks HTTP/2
)

func frames(tokens int) [][]byte {
	chunk := func(delta string, finish string) []byte {
		fin := "null"
		if finish != "" {
			fin = strconv.Quote(finish)
		}
		return []byte(fmt.Sprintf(`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":%s,"finish_reason":%s}]}`+"\n\n", delta, fin))
	}
	out := [][]byte{chunk(`{"role":"assistant","content":""}`, "")}
	for i := 0; i < tokens; i++ {
		out = append(out, chunk(`{"content":" tok"}`, ""))
	}
	out = append(out, chunk(`{}`, "stop"))
	out = append(out, []byte(fmt.Sprintf(`data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":%d,"total_tokens":%d}}`+"\n\n", tokens, tokens+3)))
	return append(out, []byte("data: [DONE]\n\n"))
}

func completions(w http.ResponseWriter, r *http.Request) {
	mu.Lock()
	peers[r.RemoteAddr] = r.ProtoMajor == 2
	mu.Unlock()
	buf := make([]byte, 4096)
	for {
		if _, err := r.Body.Read(buf); err != nil {
			break
		}
	}
	tokens, _ := strconv.Atoi(r.Header.Get("x-bench-tokens"))
	if tokens < 1 {
		tokens = 1
	}
	w.Header().Set("Content-Type", "text/event-stream")
	flusher := w.(http.Flusher)
	for _, f := range frames(tokens) {
		w.Write(f)
		flusher.Flush()
	}
}

func certificate(path string) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, _ := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &key.PublicKey, key)
	os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func main() {
	useTLS := flag.Bool("tls", false, "serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN)")
	certPath := flag.String("cert", "", "where to write the certificate (PEM) with -tls")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", completions)
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		h2 := 0
		for _, isH2 := range peers {
			if isH2 {
				h2++
			}
		}
		json.NewEncoder(w).Encode(map[string]int{"sockets": len(peers), "h2": h2})
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		peers = map[string]bool{}
		mu.Unlock()
		w.Write([]byte("{}"))
	})
	server := &http.Server{Handler: mux}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	var cfg *tls.Config
	if *useTLS { // the certificate is on disk before the port is announced
		cfg = &tls.Config{Certificates: []tls.Certificate{certificate(*certPath)}, NextProtos: []string{"h2", "http/1.1"}}
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	if cfg != nil {
		server.TLSConfig = cfg
		panic(server.ServeTLS(ln, "", ""))
	}
	panic(server.Serve(ln))
}
