// Command example selects a model and streams a generation from Switchboard.
//
//	go run ./cmd/example "Write a haiku"
//	go run ./cmd/example -target 127.0.0.1:50051 -account acct-1 "Write a haiku"
//
// The target defaults to $SWITCHBOARD_TARGET, else 127.0.0.1:50051. An error prints its gRPC code
// and Switchboard's reason, and exits 1.
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

func defaultTarget() string {
	if t := os.Getenv("SWITCHBOARD_TARGET"); t != "" {
		return t
	}
	return "127.0.0.1:50051"
}

func main() {
	target := flag.String("target", defaultTarget(), "Switchboard address (HOST:PORT)")
	account := flag.String("account", "go-example", "account id")
	flag.Parse()
	prompt := strings.Join(flag.Args(), " ")
	if prompt == "" {
		prompt = "Hello from Go"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	conn, _ := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer conn.Close()
	client := pb.NewRouterServiceClient(conn)
	req := &pb.GenerateRequest{AccountId: *account, Modality: pb.Modality_MODALITY_TEXT,
		Content: &pb.GenerateRequest_Prompt{Prompt: prompt}}
	sel, err := client.SelectModel(ctx, &pb.SelectModelRequest{Request: req})
	if err != nil {
		code, reason, meta := switchboard.ErrorInfo(err)
		log.Fatalf("select: %v %s %v (%v)", code, reason, meta, err)
	}
	fmt.Fprintln(os.Stderr, "# would use", sel.GetDecision().GetModel().GetId())
	stream, _ := client.Generate(ctx, req)
	for {
		frame, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			code, reason, meta := switchboard.ErrorInfo(err)
			log.Fatalf("generate: %v %s %v (%v)", code, reason, meta, err)
		}
		fmt.Print(frame.GetDelta().GetText())
	}
	fmt.Println()
}
