// Throwaway SolrCloud for Parley's integration tests: embedded ZooKeeper + 2 Jetty Solr nodes on
// 127.0.0.1 (MiniSolrCloudCluster from solr-test-framework), the "parley" configset uploaded and
// the parley_messages collection created. Compiled and launched by solr-test.sh; see README.md.
//
// System properties (solr-test.sh sets them all):
//   parley.solr.run        run dir; the cluster lives in RUN/cluster, RUN/ready is written when up
//   parley.solr.conf       configset conf dir to upload (deploy/dev/solr/configset/conf)
//   parley.solr.port       node 1 port (fixed; clients use http://127.0.0.1:PORT/solr)
//   parley.solr.port2      node 2 port (0 = any free port)
//   parley.solr.collection collection name (parley_messages)
//   parley.solr.shards     numShards (2), replicationFactor is 1
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.apache.solr.client.solrj.request.CollectionAdminRequest;
import org.apache.solr.cloud.MiniSolrCloudCluster;
import org.apache.solr.embedded.JettyConfig;
import org.apache.solr.embedded.JettySolrRunner;

public final class ParleySolr {
  private static String prop(String name) {
    String v = System.getProperty(name);
    if (v == null || v.isEmpty()) throw new IllegalArgumentException("missing -D" + name);
    return v;
  }

  private static JettyConfig jetty(int port) {
    return JettyConfig.builder()
        .setPort(port)
        .setContext("/solr")
        .stopAtShutdown(false) // our shutdown hook stops the whole cluster in order
        .withPortRetryTime(2) // a taken port fails fast instead of retrying for 60 s
        .build();
  }

  public static void main(String[] args) {
    try {
      run();
    } catch (Throwable t) {
      // Jetty/ZooKeeper threads would keep a half-started JVM alive: exit so `wait` sees it die.
      System.err.println("parley-solr: FAILED to start");
      t.printStackTrace();
      System.exit(1); // the shutdown hook (if registered) still stops what was started
    }
  }

  private static void run() throws Exception {
    long t0 = System.nanoTime();
    Path run = Paths.get(prop("parley.solr.run")).toAbsolutePath();
    Path conf = Paths.get(prop("parley.solr.conf")).toAbsolutePath();
    int port = Integer.parseInt(prop("parley.solr.port"));
    int port2 = Integer.parseInt(prop("parley.solr.port2"));
    String collection = prop("parley.solr.collection");
    int shards = Integer.parseInt(prop("parley.solr.shards"));
    Path ready = run.resolve("ready");
    Files.deleteIfExists(ready);

    // Node 1 on the fixed port (the constructor also starts ZooKeeper on a free port), node 2 after.
    // The test framework's solr.xml, plus the global limit on boolean clauses (it also caps how
    // many terms a prefix inside {!complexphrase} may expand to; solrconfig.xml cannot go higher).
    String solrXml =
        MiniSolrCloudCluster.DEFAULT_CLOUD_SOLR_XML.replaceFirst(
            "<solr>",
            "<solr>\n  <int name=\"maxBooleanClauses\">\\${solr.max.booleanClauses:1024}</int>");
    MiniSolrCloudCluster cluster =
        new MiniSolrCloudCluster(1, run.resolve("cluster"), solrXml, jetty(port));
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  try {
                    Files.deleteIfExists(ready);
                    System.out.println("parley-solr: shutting down");
                    cluster.shutdown();
                    System.out.println("parley-solr: stopped");
                  } catch (Throwable t) {
                    t.printStackTrace();
                  } finally {
                    stopped.countDown();
                  }
                },
                "parley-solr-shutdown"));

    JettySolrRunner node2 = cluster.startJettySolrRunner("node2", "/solr", jetty(port2));
    cluster.waitForAllNodes(60);

    cluster.uploadConfigSet(conf, "parley");
    CollectionAdminRequest.createCollection(collection, "parley", shards, 1)
        .process(cluster.getSolrClient());
    cluster.waitForActiveCollection(collection, 60, TimeUnit.SECONDS, shards, shards);

    String zk = cluster.getZkServer().getZkAddress();
    String info =
        "url=http://127.0.0.1:" + cluster.getJettySolrRunner(0).getLocalPort() + "/solr\n"
            + "node2=http://127.0.0.1:" + node2.getLocalPort() + "/solr\n"
            + "zk=" + zk + "\n"
            + "collection=" + collection + "\n";
    Path tmp = run.resolve("ready.tmp");
    Files.write(tmp, info.getBytes(StandardCharsets.UTF_8));
    Files.move(tmp, ready, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    System.out.printf(
        "parley-solr: READY after %.1f s%n%s", (System.nanoTime() - t0) / 1e9, info);
    System.out.flush();

    stopped.await(); // until SIGTERM (the hook runs cluster.shutdown())
  }
}
