// Command loadgen measures streaming model calls the same way for every system: an upstream
// called directly over HTTP (OpenAI Chat Completions or Anthropic Messages, SSE), a gateway that
// speaks either of those, or Switchboard's Generate over gRPC. It prints one JSON object.
//
// Scenarios:
//
//	single      one stream at a time: -ttft-n streams cancelled after their first token, then
//	            -gap-n streams read to the end (TTFT and inter-token gaps)
//	burst       -streams streams started at once and read to the end, -rounds times
//	throughput  -streams workers calling back to back for -seconds (use a 1-token model)
//
// Every target is on loopback; every scenario is bounded in count and time.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	pb "switchboard/clients/go/switchboardv1"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// stream is one call: it reports each token's arrival through onToken and returns when the
// answer ends (nil), the first token arrived and stopAfterFirst is set (nil), or it fails.
type caller interface {
	stream(ctx context.Context, worker int, stopAfterFirst bool, onToken func()) error
}

// ------------------------------------------------------------------- HTTP (SSE)

type httpCaller struct {
	client    *http.Client
	url       string
	body      []byte
	headers   map[string]string
	anthropic bool
}

func newHTTPCaller(kind, url, model, key string, conns int) *httpCaller {
	tr := &http.Transport{
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	msgs := []map[string]string{{"role": "user", "content": "Tell me a story"}}
	c := &httpCaller{client: &http.Client{Transport: tr}, url: url, headers: map[string]string{"content-type": "application/json"}}
	var body map[string]any
	if kind == "anthropic" {
		c.anthropic = true
		body = map[string]any{"model": model, "messages": msgs, "max_tokens": 1024, "stream": true}
		c.headers["x-api-key"] = key
		c.headers["anthropic-version"] = "2023-06-01"
	} else {
		body = map[string]any{"model": model, "messages": msgs, "stream": true}
		if key != "" {
			c.headers["authorization"] = "Bearer " + key
		}
	}
	c.body, _ = json.Marshal(body)
	return c
}

var (
	dataPrefix = []byte("data:")
	doneMarker = []byte("[DONE]")
)

type chatChunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
	} `json:"choices"`
}

type anthropicEvent struct {
	Type  string `json:"type"`
	Delta struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"delta"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func (c *httpCaller) stream(ctx context.Context, _ int, stopAfterFirst bool, onToken func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(c.body))
	if err != nil {
		return err
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	r := bufio.NewReaderSize(resp.Body, 16<<10)
	tokens := 0
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("stream ended before its end marker after %d tokens", tokens)
			}
			return err
		}
		if !bytes.HasPrefix(line, dataPrefix) {
			continue
		}
		data := bytes.TrimSpace(line[len(dataPrefix):])
		if c.anthropic {
			var ev anthropicEvent
			if err := json.Unmarshal(data, &ev); err != nil {
				return fmt.Errorf("bad event: %w", err)
			}
			switch ev.Type {
			case "content_block_delta":
				if ev.Delta.Text != "" {
					tokens++
					onToken()
					if stopAfterFirst {
						return nil
					}
				}
			case "message_stop":
				_, _ = io.Copy(io.Discard, r) // read to the end so the connection is reused
				return nil
			case "error":
				return fmt.Errorf("stream error event: %s", data)
			}
			continue
		}
		if bytes.Equal(data, doneMarker) {
			_, _ = io.Copy(io.Discard, r)
			return nil
		}
		var ch chatChunk
		if err := json.Unmarshal(data, &ch); err != nil {
			return fmt.Errorf("bad chunk: %w", err)
		}
		if len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
			tokens++
			onToken()
			if stopAfterFirst {
				return nil
			}
		}
	}
}

// ------------------------------------------------------------------------- gRPC

type grpcCaller struct {
	conns   []*grpc.ClientConn
	clients []pb.RouterServiceClient
	model   string
	prefix  string
}

func newGRPCCaller(addr, model, prefix string, conns int) (*grpcCaller, error) {
	g := &grpcCaller{model: model, prefix: prefix}
	for i := 0; i < conns; i++ {
		// Each connection is its own subchannel, so SO_REUSEPORT spreads them over the workers.
		conn, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithUserAgent(fmt.Sprintf("loadgen-%d", i)))
		if err != nil {
			return nil, err
		}
		conn.Connect()
		g.conns = append(g.conns, conn)
		g.clients = append(g.clients, pb.NewRouterServiceClient(conn))
	}
	return g, nil
}

func requestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (g *grpcCaller) stream(ctx context.Context, worker int, stopAfterFirst bool, onToken func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := &pb.GenerateRequest{
		AccountId:     fmt.Sprintf("%s-%d", g.prefix, worker),
		RequestId:     requestID(),
		Modality:      pb.Modality_MODALITY_TEXT,
		Content:       &pb.GenerateRequest_Prompt{Prompt: "Tell me a story"},
		PinnedModelId: g.model,
	}
	st, err := g.clients[worker%len(g.clients)].Generate(ctx, req)
	if err != nil {
		return err
	}
	tokens, completed := 0, false
	for {
		frame, err := st.Recv()
		if err == io.EOF { // read to the status, so the call ends OK rather than cancelled
			if !completed {
				return fmt.Errorf("stream ended without a completion after %d tokens", tokens)
			}
			return nil
		}
		if err != nil {
			return err
		}
		if d := frame.GetDelta(); d != nil && d.GetText() != "" {
			tokens++
			onToken()
			if stopAfterFirst {
				return nil
			}
		}
		completed = completed || frame.GetCompletion() != nil
	}
}

// -------------------------------------------------------------------- measuring

type sample struct {
	ttft []float64
	gaps []float64
	lat  []float64
	errs int
	ok   int
	err  string
	mu   sync.Mutex
}

func (s *sample) fail(err error) {
	s.mu.Lock()
	s.errs++
	if s.err == "" {
		s.err = err.Error()
	}
	s.mu.Unlock()
}

// one runs a call and records its TTFT and gaps (in milliseconds).
func (s *sample) one(c caller, worker int, stopAfterFirst bool, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	var last time.Time
	var gaps []float64
	ttft := -1.0
	err := c.stream(ctx, worker, stopAfterFirst, func() {
		now := time.Now()
		if ttft < 0 {
			ttft = ms(now.Sub(start))
		} else {
			gaps = append(gaps, ms(now.Sub(last)))
		}
		last = now
	})
	end := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && ttft < 0 {
		err = errors.New("no token")
	}
	if err != nil {
		s.errs++
		if s.err == "" {
			s.err = err.Error()
		}
		return
	}
	s.ok++
	s.ttft = append(s.ttft, ttft)
	s.gaps = append(s.gaps, gaps...)
	s.lat = append(s.lat, ms(end.Sub(start)))
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func pct(values []float64, p float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	v := append([]float64(nil), values...)
	sort.Float64s(v)
	i := int(math.Round(p/100*float64(len(v))+0.5)) - 1
	return v[max(0, min(len(v)-1, i))]
}

func round3(x float64) any {
	if math.IsNaN(x) {
		return nil
	}
	return math.Round(x*1000) / 1000
}

// warm makes one call per worker id so connections, accounts and caches exist before timing.
func warm(c caller, n int, timeout time.Duration) error {
	s := &sample{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			s.one(c, i, false, timeout)
		}(i)
	}
	wg.Wait()
	if s.errs > 0 {
		return fmt.Errorf("warm-up: %d of %d calls failed: %s", s.errs, n, s.err)
	}
	return nil
}

func main() {
	kind := flag.String("kind", "openai", "openai, anthropic (HTTP SSE) or grpc (Switchboard Generate)")
	url := flag.String("url", "", "the HTTP endpoint (openai, anthropic)")
	addr := flag.String("addr", "", "host:port of the gRPC server (grpc)")
	model := flag.String("model", "bench-t50", "the model: the upstream's name (HTTP) or the pinned model id (grpc)")
	key := flag.String("key", "bench-key", "the API key sent (HTTP)")
	prefix := flag.String("accounts", "bench", "account id prefix (grpc): each worker uses <prefix>-<worker>")
	scenario := flag.String("scenario", "single", "single, burst or throughput")
	streams := flag.Int("streams", 64, "concurrent streams (burst, throughput)")
	rounds := flag.Int("rounds", 1, "bursts (burst)")
	seconds := flag.Float64("seconds", 5, "duration (throughput)")
	ttftN := flag.Int("ttft-n", 100, "streams cancelled after the first token (single)")
	gapN := flag.Int("gap-n", 10, "streams read to the end (single)")
	conns := flag.Int("conns", 8, "gRPC connections")
	timeout := flag.Duration("timeout", 60*time.Second, "per-call timeout")
	flag.Parse()

	var c caller
	switch *kind {
	case "openai", "anthropic":
		c = newHTTPCaller(*kind, *url, *model, *key, max(*streams, 8))
	case "grpc":
		g, err := newGRPCCaller(*addr, *model, *prefix, *conns)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		c = g
	default:
		fmt.Fprintln(os.Stderr, "unknown -kind", *kind)
		os.Exit(2)
	}
	workers := *streams
	if *scenario == "single" {
		workers = 1
	}
	if err := warm(c, max(workers, 8), *timeout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	s := &sample{}
	started := time.Now()
	switch *scenario {
	case "single":
		// TTFT from streams cancelled after their first token, gaps from streams read to the end
		// (whose TTFTs count too).
		for i := 0; i < *ttftN; i++ {
			s.one(c, 0, true, *timeout)
			time.Sleep(2 * time.Millisecond) // let the cancelled call settle
		}
		for i := 0; i < *gapN; i++ {
			s.one(c, 0, false, *timeout)
		}
	case "burst":
		for r := 0; r < *rounds; r++ {
			var wg sync.WaitGroup
			gate := make(chan struct{})
			for i := 0; i < *streams; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					<-gate
					s.one(c, i, false, *timeout)
				}(i)
			}
			close(gate)
			wg.Wait()
		}
	case "throughput":
		deadline := time.Now().Add(time.Duration(*seconds * float64(time.Second)))
		var wg sync.WaitGroup
		for i := 0; i < *streams; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				for time.Now().Before(deadline) {
					s.one(c, i, false, *timeout)
				}
			}(i)
		}
		wg.Wait()
	default:
		fmt.Fprintln(os.Stderr, "unknown -scenario", *scenario)
		os.Exit(2)
	}
	elapsed := time.Since(started).Seconds()
	out := map[string]any{
		"calls":       s.ok,
		"errors":      s.errs,
		"ttft_p50_ms": round3(pct(s.ttft, 50)),
		"ttft_p99_ms": round3(pct(s.ttft, 99)),
		"gap_p50_ms":  round3(pct(s.gaps, 50)),
		"gap_p99_ms":  round3(pct(s.gaps, 99)),
		"gap_max_ms":  round3(pct(s.gaps, 100)),
		"gap_samples": len(s.gaps),
		"lat_p50_ms":  round3(pct(s.lat, 50)),
		"lat_p99_ms":  round3(pct(s.lat, 99)),
		"rps":         math.Round(float64(s.ok)/elapsed*10) / 10,
	}
	if s.err != "" {
		out["first_error"] = s.err
	}
	enc := json.NewEncoder(os.Stdout)
	_ = enc.Encode(out)
}
