package dev.switchboard.client;

import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.StatusRuntimeException;
import java.util.Iterator;
import java.util.concurrent.TimeUnit;
import switchboard.v1.Catalog.Modality;
import switchboard.v1.Router.GenerateRequest;
import switchboard.v1.Router.GenerateResponse;
import switchboard.v1.Router.SelectModelRequest;
import switchboard.v1.RouterServiceGrpc;

/** Selects a model and streams a generation: {@code java ... Example [host:port] [prompt]}. */
public final class Example {
  private Example() {}

  public static void main(String[] args) throws InterruptedException {
    String target = args.length > 0 ? args[0] : "127.0.0.1:50051";
    String prompt = args.length > 1 ? args[1] : "Hello from Java";
    ManagedChannel channel = ManagedChannelBuilder.forTarget(target).usePlaintext().build();
    try {
      RouterServiceGrpc.RouterServiceBlockingStub stub =
          RouterServiceGrpc.newBlockingStub(channel).withDeadlineAfter(60, TimeUnit.SECONDS);
      GenerateRequest request = GenerateRequest.newBuilder()
          .setAccountId("java-example").setModality(Modality.MODALITY_TEXT).setPrompt(prompt).build();
      var decision = stub.selectModel(SelectModelRequest.newBuilder().setRequest(request).build()).getDecision();
      System.err.println("# would use " + decision.getModel().getId());
      Iterator<GenerateResponse> frames = stub.generate(request);
      while (frames.hasNext()) {
        GenerateResponse frame = frames.next();
        if (frame.hasDelta()) {
          System.out.print(frame.getDelta().getText());
        } else if (frame.hasCompletion()) {
          System.err.println("\n# done: " + frame.getCompletion().getCreditsCharged() + " credits");
        }
      }
    } catch (StatusRuntimeException e) {
      System.err.println("failed: " + Errors.errorInfo(e).map(i -> i.getReason()).orElse(e.getStatus().toString()));
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }
}
