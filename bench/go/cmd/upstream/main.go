// Command upstream is a fake model provider for benchmarks: an OpenAI-compatible Chat
// Completions server and an Anthropic Messages server, both streaming Server-Sent Events, on one
// loopback port. It checks what the real APIs check (method, JSON body, model, messages, stream,
// the key header) and answers with a fixed number of tokens at a fixed pace, so the time it adds
// is known and it is never the bottleneck.
//
//	upstream -listen 127.0.0.1:0 -port-file up.port -tokens 50 -ttft-ms 10 -gap-ms 10
//
// A model named "<anything>-t<N>" (for example "bench-t1") answers with N tokens instead.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

type config struct {
	tokens int
	ttft   time.Duration
	gap    time.Duration
}

type chatRequest struct {
	Model         string            `json:"model"`
	Messages      []json.RawMessage `json:"messages"`
	Stream        bool              `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

type messagesRequest struct {
	Model     string            `json:"model"`
	Messages  []json.RawMessage `json:"messages"`
	Stream    bool              `json:"stream"`
	MaxTokens int               `json:"max_tokens"`
}

// tokensFor is the answer's length: the "-t<N>" suffix of the model name, or the default.
func (c config) tokensFor(model string) int {
	if i := strings.LastIndex(model, "-t"); i >= 0 {
		if n, err := strconv.Atoi(model[i+2:]); err == nil && n > 0 {
			return n
		}
	}
	return c.tokens
}

func fail(w http.ResponseWriter, status int, kind, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body, _ := json.Marshal(map[string]any{"error": map[string]any{"type": kind, "message": message}})
	_, _ = w.Write(body)
}

// pace writes the answer: the first event after ttft, then one token every gap.
func (c config) pace(w http.ResponseWriter, r *http.Request, n int, head, token func(i int) string, tail string) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		fail(w, http.StatusInternalServerError, "server_error", "no flusher")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	ctx := r.Context()
	timer := time.NewTimer(c.ttft)
	defer timer.Stop()
	for i := 0; i < n; i++ {
		if i > 0 {
			timer.Reset(c.gap)
		}
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if i == 0 {
			_, _ = w.Write([]byte(head(0)))
		}
		if _, err := w.Write([]byte(token(i))); err != nil {
			return
		}
		flusher.Flush()
	}
	_, _ = w.Write([]byte(tail))
	flusher.Flush()
}

func (c config) chat(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		fail(w, http.StatusMethodNotAllowed, "invalid_request_error", "POST only")
		return
	}
	var req chatRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "invalid_request_error", "body is not JSON: "+err.Error())
		return
	}
	if req.Model == "" || len(req.Messages) == 0 || !req.Stream {
		fail(w, http.StatusBadRequest, "invalid_request_error", "model, messages and stream: true are required")
		return
	}
	n := c.tokensFor(req.Model)
	created := time.Now().Unix()
	prefix := fmt.Sprintf(`data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":%d,"model":%q,"choices":[`, created, req.Model)
	head := func(int) string {
		return prefix + `{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n"
	}
	token := func(i int) string {
		return prefix + `{"index":0,"delta":{"content":"tok` + strconv.Itoa(i) + ` "},"finish_reason":null}]}` + "\n\n"
	}
	tail := prefix + `{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n"
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		tail += fmt.Sprintf(`data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":%d,"model":%q,"choices":[],"usage":{"prompt_tokens":8,"completion_tokens":%d,"total_tokens":%d}}`, created, req.Model, n, n+8) + "\n\n"
	}
	tail += "data: [DONE]\n\n"
	c.pace(w, r, n, head, token, tail)
}

func (c config) messages(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		fail(w, http.StatusMethodNotAllowed, "invalid_request_error", "POST only")
		return
	}
	if r.Header.Get("x-api-key") == "" || r.Header.Get("anthropic-version") == "" {
		fail(w, http.StatusUnauthorized, "authentication_error", "x-api-key and anthropic-version are required")
		return
	}
	var req messagesRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "invalid_request_error", "body is not JSON: "+err.Error())
		return
	}
	if req.Model == "" || len(req.Messages) == 0 || !req.Stream || req.MaxTokens <= 0 {
		fail(w, http.StatusBadRequest, "invalid_request_error", "model, messages, max_tokens and stream: true are required")
		return
	}
	n := c.tokensFor(req.Model)
	head := func(int) string {
		return "event: message_start\ndata: " + fmt.Sprintf(`{"type":"message_start","message":{"id":"msg_bench","type":"message","role":"assistant","model":%q,"content":[],"stop_reason":null,"usage":{"input_tokens":8,"output_tokens":1}}}`, req.Model) + "\n\n" +
			"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
	}
	token := func(i int) string {
		return `event: content_block_delta` + "\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok` + strconv.Itoa(i) + ` "}}` + "\n\n"
	}
	tail := "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
		fmt.Sprintf(`event: message_delta`+"\n"+`data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":%d}}`, n) + "\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	c.pace(w, r, n, head, token, tail)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (loopback)")
	portFile := flag.String("port-file", "", "write the bound port here once listening")
	tokens := flag.Int("tokens", 50, "tokens per answer (a model named ...-t<N> overrides it)")
	ttft := flag.Int("ttft-ms", 10, "milliseconds before the first token")
	gap := flag.Int("gap-ms", 10, "milliseconds between tokens")
	flag.Parse()
	c := config{tokens: *tokens, ttft: time.Duration(*ttft) * time.Millisecond, gap: time.Duration(*gap) * time.Millisecond}
	mux := http.NewServeMux()
	for _, p := range []string{"/v1/chat/completions", "/chat/completions"} {
		mux.HandleFunc(p, c.chat)
	}
	mux.HandleFunc("/v1/messages", c.messages)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *portFile != "" {
		port := ln.Addr().(*net.TCPAddr).Port
		if err := os.WriteFile(*portFile, []byte(strconv.Itoa(port)), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(ln))
}
