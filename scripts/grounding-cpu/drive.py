# Sends N sequential seed /user requests to 127.0.0.1:PORT and counts the non-200 answers (run.sh).
import http.client, json, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port)
body = json.dumps({"query": "Jason is 25 years old"})
bad = 0
for i in range(n):
    c.request("POST", "/user", body, {"content-type": "application/json"})
    r = c.getresponse(); data = r.read()
    if r.status != 200: bad += 1
print("done", n, "bad", bad, data[:200])
