package switchboard_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	switchboard "switchboard/clients/go"
	pb "switchboard/clients/go/switchboardv1"
)

// startServer runs `switchboard serve` (SWITCHBOARD_BIN) on a free loopback port.
func startServer(t *testing.T) pb.RouterServiceClient {
	t.Helper()
	bin := os.Getenv("SWITCHBOARD_BIN")
	if bin == "" {
		t.Fatal("SWITCHBOARD_BIN must name the switchboard command (make clients-test sets it)")
	}
	dir := t.TempDir()
	portFile := filepath.Join(dir, "port")
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--port-file", portFile, "--workers", "1",
		"--ledger", "sqlite:"+filepath.Join(dir, "l.db"), "--auto-create-accounts", "--log-level", "warning",
		"--sim-ttft-ms", "0", "--sim-inter-token-ms", "20", "--sim-tokens", "20")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() })
	var port int
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(portFile); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			port, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
	}
	if port == 0 {
		t.Fatal("server did not start")
	}
	conn, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(port), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewRouterServiceClient(conn)
}

func textRequest(account, id string) *pb.GenerateRequest {
	return &pb.GenerateRequest{AccountId: account, RequestId: id, Modality: pb.Modality_MODALITY_TEXT,
		Content: &pb.GenerateRequest_Prompt{Prompt: "Hello from Go"}}
}

func TestEndToEnd(t *testing.T) {
	client := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("ListModels", func(t *testing.T) {
		resp, err := client.ListModels(ctx, &pb.ListModelsRequest{Modality: pb.Modality_MODALITY_VIDEO})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetModels()) != 9 {
			t.Fatalf("want 9 video models, got %d", len(resp.GetModels()))
		}
	})

	t.Run("SelectAutomaticAndPinned", func(t *testing.T) {
		auto, err := client.SelectModel(ctx, &pb.SelectModelRequest{Request: textRequest("go", "")})
		if err != nil {
			t.Fatal(err)
		}
		if auto.GetDecision().GetModel().GetId() != "gemini-3.1-flash-lite" || auto.GetDecision().GetMode() != pb.SelectionMode_SELECTION_MODE_AUTOMATIC {
			t.Fatalf("unexpected automatic decision %v", auto.GetDecision().GetModel().GetId())
		}
		req := textRequest("go", "")
		req.PinnedModelId = "gpt-5.4"
		pinned, err := client.SelectModel(ctx, &pb.SelectModelRequest{Request: req})
		if err != nil {
			t.Fatal(err)
		}
		if pinned.GetDecision().GetModel().GetId() != "gpt-5.4" || len(pinned.GetDecision().GetFallbackModelIds()) != 0 {
			t.Fatalf("unexpected pinned decision %v", pinned.GetDecision())
		}
	})

	t.Run("GenerateToCompletion", func(t *testing.T) {
		stream, err := client.Generate(ctx, textRequest("go", "g1"))
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		var completion *pb.Completion
		for {
			frame, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			switch ev := frame.GetEvent().(type) {
			case *pb.GenerateResponse_Decision:
				kinds = append(kinds, "decision")
			case *pb.GenerateResponse_Delta:
				kinds = append(kinds, "delta")
			case *pb.GenerateResponse_Completion:
				kinds = append(kinds, "completion")
				completion = ev.Completion
			}
		}
		if len(kinds) != 22 || kinds[0] != "decision" || kinds[21] != "completion" {
			t.Fatalf("unexpected frames %v", kinds)
		}
		if completion.GetCreditsCharged() != 1 || completion.GetBalanceRemaining() != 499 {
			t.Fatalf("unexpected completion %v", completion)
		}
	})

	t.Run("CancelMidStream", func(t *testing.T) {
		cctx, ccancel := context.WithCancel(ctx)
		stream, err := client.Generate(cctx, textRequest("go-cancel", "c1"))
		if err != nil {
			t.Fatal(err)
		}
		deltas := 0
		for deltas < 3 {
			frame, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if frame.GetDelta() != nil {
				deltas++
			}
		}
		start := time.Now()
		ccancel()
		_, err = stream.Recv()
		code, _, _ := switchboard.ErrorInfo(err)
		if code != codes.Canceled {
			t.Fatalf("want Canceled, got %v (%v)", code, err)
		}
		if time.Since(start) > 2*time.Second {
			t.Fatal("cancellation was not prompt")
		}
	})

	t.Run("ErrorReason", func(t *testing.T) {
		req := textRequest("go", "")
		req.PinnedModelId = "gpt-9"
		_, err := client.SelectModel(ctx, &pb.SelectModelRequest{Request: req})
		code, reason, meta := switchboard.ErrorInfo(err)
		if code != codes.NotFound || reason != "MODEL_NOT_FOUND" || meta["model_id"] != "gpt-9" {
			t.Fatalf("want NotFound MODEL_NOT_FOUND, got %v %q %v", code, reason, meta)
		}
	})
}
