import java.io.File;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.log4j.BasicConfigurator;
import org.apache.log4j.ConsoleAppender;
import org.apache.log4j.Level;
import org.apache.log4j.Logger;
import org.apache.log4j.PatternLayout;

/**
 * Test launcher: one NameNode + one DataNode (MiniDFSCluster) on 127.0.0.1.
 *
 * <p>Usage: {@code java -cp <classpath> MiniDfs <baseDir> <nameNodePort, 0 = any free port>}
 *
 * <p>Prints {@code MINIDFS_READY hdfs://127.0.0.1:<port>} on stdout once the cluster is up and
 * out of safe mode, then runs until stdin reaches EOF (the parent closed it or died: clean
 * shutdown) or the JVM gets SIGTERM/SIGINT. Hadoop's logging goes to stderr.
 */
public final class MiniDfs {
  private MiniDfs() {}

  public static void main(String[] args) throws Exception {
    if (args.length != 2) {
      System.err.println("usage: MiniDfs <baseDir> <nameNodePort>");
      System.exit(2);
    }
    File baseDir = new File(args[0]);
    int port = Integer.parseInt(args[1]);

    // Hadoop logs through log4j 1.x; without a configuration it would log nothing at all.
    BasicConfigurator.configure(
        new ConsoleAppender(new PatternLayout("%d{HH:mm:ss.SSS} %-5p %c{1} - %m%n"), "System.err"));
    Logger.getRootLogger().setLevel(Level.INFO);

    Configuration conf = new Configuration();
    conf.set("dfs.replication", "1");
    conf.set("dfs.namenode.rpc-bind-host", "127.0.0.1");
    conf.set("dfs.namenode.servicerpc-bind-host", "127.0.0.1");
    conf.set("dfs.namenode.http-bind-host", "127.0.0.1");
    conf.set("dfs.datanode.hostname", "127.0.0.1");
    // Test files are tiny; keep the NameNode from refusing writes on a nearly full disk.
    conf.set("dfs.namenode.resource.du.reserved", "0");
    conf.set("dfs.datanode.du.reserved", "0");

    MiniDFSCluster cluster =
        new MiniDFSCluster.Builder(conf, baseDir)
            .nameNodePort(port)
            .nameNodeHttpPort(0)
            .numDataNodes(1)
            .format(true)
            .build();
    cluster.waitActive();

    System.out.println("MINIDFS_READY hdfs://127.0.0.1:" + cluster.getNameNodePort());
    System.out.flush();

    // Block until the parent closes our stdin (also happens when it dies). On SIGTERM the JVM
    // just exits: calling cluster.shutdown() from a JVM shutdown hook trips Hadoop's own
    // ShutdownHookManager, and the throwaway base dir is removed by the caller anyway.
    while (System.in.read() != -1) {
      // discard input
    }
    cluster.shutdown();
    System.exit(0);
  }
}
