package dev.switchboard.client;

import com.google.rpc.ErrorInfo;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.StatusRuntimeException;
import java.util.concurrent.TimeUnit;
import switchboard.v1.Catalog.Modality;
import switchboard.v1.Router.GenerateRequest;
import switchboard.v1.Router.SelectModelRequest;
import switchboard.v1.RouterServiceGrpc;

/**
 * Selects a model and streams a generation: {@code Example [--target HOST:PORT] [prompt...]}. The
 * target defaults to {@code $SWITCHBOARD_TARGET}, else 127.0.0.1:50051. A failure prints its
 * status and Switchboard's reason, and exits 1.
 */
public final class Example {
  private Example() {}

  public static void main(String[] args) throws InterruptedException {
    String target = System.getenv().getOrDefault("SWITCHBOARD_TARGET", "127.0.0.1:50051");
    var words = new java.util.ArrayList<String>();
    for (int i = 0; i < args.length; i++) {
      if (args[i].equals("--target") && i + 1 < args.length) {
        target = args[++i];
      } else {
        words.add(args[i]);
      }
    }
    String prompt = words.isEmpty() ? "Hello from Java" : String.join(" ", words);
    int status = 0;
    ManagedChannel channel = ManagedChannelBuilder.forTarget(target).usePlaintext().build();
    try {
      var stub = RouterServiceGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS);
      var request = GenerateRequest.newBuilder().setAccountId("java-example").setModality(Modality.MODALITY_TEXT)
          .setPrompt(prompt).build();
      var decision = stub.selectModel(SelectModelRequest.newBuilder().setRequest(request).build()).getDecision();
      System.err.println("# would use " + decision.getModel().getId());
      stub.generate(request).forEachRemaining(f -> System.out.print(f.getDelta().getText()));
      System.out.println();
    } catch (StatusRuntimeException e) {
      // errors: Errors.errorInfo(statusRuntimeException).map(ErrorInfo::getReason)
      String reason = Errors.errorInfo(e).map(ErrorInfo::getReason).orElse("");
      System.err.println("failed: " + e.getStatus() + (reason.isEmpty() ? "" : " (reason " + reason + ")"));
      status = 1;
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    System.exit(status);
  }
}
