package dev.switchboard.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.rpc.ErrorInfo;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import switchboard.v1.Catalog.Modality;
import switchboard.v1.Router.Decision;
import switchboard.v1.Router.GenerateRequest;
import switchboard.v1.Router.GenerateResponse;
import switchboard.v1.Router.ListModelsRequest;
import switchboard.v1.Router.SelectModelRequest;
import switchboard.v1.Router.SelectionMode;
import switchboard.v1.RouterServiceGrpc;

/** The real server (SWITCHBOARD_BIN) on a free loopback port, driven through the generated stubs. */
class EndToEndTest {
  private static Process server;
  private static ManagedChannel channel;
  private static RouterServiceGrpc.RouterServiceBlockingStub stub;

  @BeforeAll
  static void start() throws Exception {
    String bin = System.getenv("SWITCHBOARD_BIN");
    assertTrue(bin != null && !bin.isEmpty(), "SWITCHBOARD_BIN must name the switchboard command");
    Path dir = Files.createTempDirectory("sb-java-");
    Path portFile = dir.resolve("port");
    server = new ProcessBuilder(bin, "serve", "--listen", "127.0.0.1:0", "--port-file", portFile.toString(),
        "--workers", "1", "--ledger", "sqlite:" + dir.resolve("l.db"), "--auto-create-accounts",
        "--log-level", "warning", "--sim-ttft-ms", "0", "--sim-inter-token-ms", "20", "--sim-tokens", "20")
        .redirectErrorStream(true).redirectOutput(dir.resolve("server.log").toFile()).start();
    long deadline = System.currentTimeMillis() + 30_000;
    while (!(Files.exists(portFile) && !Files.readString(portFile).isBlank())) {
      assertTrue(System.currentTimeMillis() < deadline, "server did not start");
      Thread.sleep(50);
    }
    channel = ManagedChannelBuilder.forTarget("127.0.0.1:" + Files.readString(portFile).trim()).usePlaintext().build();
    stub = RouterServiceGrpc.newBlockingStub(channel);
  }

  @AfterAll
  static void stop() throws Exception {
    channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    server.destroy();
    server.waitFor(30, TimeUnit.SECONDS);
  }

  private static GenerateRequest request(String account, String requestId) {
    return GenerateRequest.newBuilder().setAccountId(account).setRequestId(requestId)
        .setModality(Modality.MODALITY_TEXT).setPrompt("Hello from Java").build();
  }

  private static RouterServiceGrpc.RouterServiceBlockingStub withDeadline() {
    return stub.withDeadlineAfter(30, TimeUnit.SECONDS);
  }

  @Test
  void listsModels() {
    var resp = withDeadline().listModels(ListModelsRequest.newBuilder().setModality(Modality.MODALITY_IMAGE).build());
    assertEquals(5, resp.getModelsCount());
  }

  @Test
  void selectsAutomaticallyAndPinned() {
    Decision auto = withDeadline().selectModel(SelectModelRequest.newBuilder().setRequest(request("java", "")).build())
        .getDecision();
    assertEquals("gemini-3.1-flash-lite", auto.getModel().getId());
    assertEquals(SelectionMode.SELECTION_MODE_AUTOMATIC, auto.getMode());
    GenerateRequest pinnedRequest = request("java", "").toBuilder().setPinnedModelId("gpt-5.4").build();
    Decision pinned = withDeadline().selectModel(SelectModelRequest.newBuilder().setRequest(pinnedRequest).build())
        .getDecision();
    assertEquals("gpt-5.4", pinned.getModel().getId());
    assertEquals(0, pinned.getFallbackModelIdsCount());
  }

  @Test
  void streamsToCompletion() {
    List<GenerateResponse> frames = new ArrayList<>();
    withDeadline().generate(request("java", "g1")).forEachRemaining(frames::add);
    assertTrue(frames.get(0).hasDecision());
    assertEquals(20, frames.stream().filter(GenerateResponse::hasDelta).count());
    var completion = frames.get(frames.size() - 1).getCompletion();
    assertEquals(1, completion.getCreditsCharged());
    assertEquals(499, completion.getBalanceRemaining());
  }

  @Test
  void cancelsMidStream() throws Exception {
    Context.CancellableContext ctx = Context.current().withCancellation();
    StatusRuntimeException err = assertThrows(StatusRuntimeException.class, () -> ctx.call(() -> {
      Iterator<GenerateResponse> frames = withDeadline().generate(request("java-cancel", "c1"));
      int deltas = 0;
      while (frames.hasNext()) {
        if (frames.next().hasDelta() && ++deltas == 3) {
          ctx.cancel(null);
        }
      }
      return null;
    }));
    assertEquals(Status.Code.CANCELLED, err.getStatus().getCode());
  }

  @Test
  void readsAnErrorsReason() {
    GenerateRequest bad = request("java", "").toBuilder().setPinnedModelId("gpt-9").build();
    StatusRuntimeException err = assertThrows(StatusRuntimeException.class,
        () -> withDeadline().selectModel(SelectModelRequest.newBuilder().setRequest(bad).build()));
    assertEquals(Status.Code.NOT_FOUND, err.getStatus().getCode());
    ErrorInfo info = Errors.errorInfo(err).orElseThrow();
    assertEquals("MODEL_NOT_FOUND", info.getReason());
    assertEquals("gpt-9", info.getMetadataOrThrow("model_id"));
  }
}
