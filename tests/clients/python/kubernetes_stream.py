"""The official Python client's stream API (kubernetes.stream) against a kybern cluster
with a real node: exec and port-forward over its WebSocket protocols. The cluster runs
pod "shell" (busybox, sleeping) and pod "web" (the test server on 8080) in "default".
Usage: python kubernetes_stream.py KUBECONFIG CHECK"""
import faulthandler
import sys

from kubernetes import client, config
from kubernetes.stream import portforward, stream

# A hang fails the check with the stack it hangs in rather than stalling the test.
faulthandler.dump_traceback_later(90, exit=True)
config.load_kube_config(sys.argv[1])
core = client.CoreV1Api()
NS = "default"


def exec_passes_stdin_and_reports_the_exit_code():
    # Preloaded: the command's output as one string.
    out = stream(core.connect_get_namespaced_pod_exec, "shell", NS,
                 command=["echo", "hello"], stdout=True, stderr=True, stdin=False, tty=False)
    assert out == "hello\n", repr(out)
    # Interactive: stdin in, stdout and stderr apart, the exit code from the error channel.
    resp = stream(core.connect_get_namespaced_pod_exec, "shell", NS,
                  command=["sh", "-c", "read line; echo got:$line; echo oops >&2; exit 3"],
                  stdout=True, stderr=True, stdin=True, tty=False, _preload_content=False)
    resp.write_stdin("typed\n")
    resp.run_forever(timeout=60)
    assert resp.read_stdout() == "got:typed\n"
    assert resp.read_stderr() == "oops\n"
    assert resp.returncode == 3, resp.returncode
    resp.close()


def portforward_reaches_the_test_server():
    pf = portforward(core.connect_get_namespaced_pod_portforward, "web", NS, ports="8080")
    sock = pf.socket(8080)
    sock.setblocking(True)
    sock.settimeout(60)
    sock.sendall(b"GET /echo?msg=through-python HTTP/1.0\r\nHost: web\r\n\r\n")
    reply = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    sock.close()
    assert reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n")[0], reply
    assert reply.endswith(b"\r\n\r\nthrough-python"), reply
    assert pf.error(8080) is None, pf.error(8080)
    pf.close()


globals()[sys.argv[2]]()
print("ok")
