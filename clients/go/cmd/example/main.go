// Command example selects a model and streams a generation from Switchboard.
//
//	go run ./cmd/example -target 127.0.0.1:50051 -account acct-1 "Write a haiku"
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	switchboard "switchboard/clients/go"
	pb "switchboard/clients/go/switchboardv1"
)

func main() {
	target := flag.String("target", "127.0.0.1:50051", "Switchboard address")
	account := flag.String("account", "go-example", "account id")
	flag.Parse()
	prompt := strings.Join(flag.Args(), " ")
	if prompt == "" {
		prompt = "Hello from Go"
	}
	conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewRouterServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	req := &pb.GenerateRequest{AccountId: *account, Modality: pb.Modality_MODALITY_TEXT, Content: &pb.GenerateRequest_Prompt{Prompt: prompt}}
	sel, err := client.SelectModel(ctx, &pb.SelectModelRequest{Request: req})
	if err != nil {
		code, reason, meta := switchboard.ErrorInfo(err)
		log.Fatalf("select: %s %s %v", code, reason, meta)
	}
	fmt.Fprintf(os.Stderr, "# would use %s (fallbacks %v)\n", sel.GetDecision().GetModel().GetId(), sel.GetDecision().GetFallbackModelIds())

	stream, err := client.Generate(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	for {
		frame, err := stream.Recv()
		if err == io.EOF {
			return
		}
		if err != nil {
			code, reason, _ := switchboard.ErrorInfo(err)
			log.Fatalf("generate: %s %s", code, reason)
		}
		switch ev := frame.GetEvent().(type) {
		case *pb.GenerateResponse_Delta:
			fmt.Print(ev.Delta.GetText())
		case *pb.GenerateResponse_Completion:
			fmt.Fprintf(os.Stderr, "\n# done: %d credits, balance %d\n", ev.Completion.GetCreditsCharged(), ev.Completion.GetBalanceRemaining())
		}
	}
}
