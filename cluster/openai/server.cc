#include "cluster/openai/server.h"

#include <httplib.h>

#include <atomic>
#include <ctime>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "cluster/openai/generation_call.h"
#include "cluster/openai/protocol.h"
#include "cluster/openai/stop_strings.h"

namespace apr::cluster::openai {
namespace {

namespace gv1 = ::apr::generation::v1;

// Used when the model folder has no chat template (docs/OPENAI.md "Chat templates").
constexpr char kFallbackTemplate[] =
    "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

std::string RandomId(const char* prefix) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return absl::StrCat(prefix, buf);
}

void SendError(httplib::Response& res, const ApiError& e) {
  res.status = e.http_status;
  res.set_content(ErrorBody(e), "application/json");
}

ApiError FromGrpc(const grpc::Status& s) {
  const int http = HttpStatusFor(s.error_code());
  const char* type = http == 401   ? "authentication_error"
                     : http == 429 ? "rate_limit_error"
                     : http >= 500 ? "server_error"
                                   : "invalid_request_error";
  return ApiError{http, s.error_message(), type, "", ""};
}

// A request resolved to one Generate call.
struct Job {
  SamplingFields sampling;
  bool chat = false;
  std::string prompt_text;        // for echo (completions with a text prompt)
  std::vector<int32_t> prompt;    // token ids as sent
  gv1::GenerateRequest request;
};

// Text prompts are tokenized first (the front end's Tokenize), so that usage can count
// the prompt even when a stop string cancels the call before its stats arrive.
std::optional<ApiError> Tokenize(gv1::Generation::Stub& stub, const std::string& text,
                                 bool special, const std::string& authorization,
                                 std::vector<int32_t>* ids) {
  grpc::ClientContext ctx;
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  gv1::TokenizeRequest req;
  req.set_text(text);
  req.set_skip_special_tokens(!special);
  gv1::TokenizeResponse resp;
  grpc::Status s = stub.Tokenize(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s);
  ids->assign(resp.ids().begin(), resp.ids().end());
  return std::nullopt;
}

void FillRequest(const ServerOptions& o, Job& job) {
  gv1::GenerateRequest& r = job.request;
  r.mutable_token_ids()->mutable_ids()->Add(job.prompt.begin(), job.prompt.end());
  r.set_max_tokens(job.sampling.max_tokens.value_or(o.default_max_tokens));
  r.mutable_sampling()->set_temperature(job.sampling.temperature);
  r.mutable_sampling()->set_top_p(job.sampling.top_p);
  // No seed: a fresh one, as OpenAI samples differently on every call.
  r.mutable_sampling()->set_seed(job.sampling.seed.value_or(std::random_device{}()));
}

const char* FinishReason(bool stopped_by_string, const std::optional<gv1::GenerationStats>& st) {
  if (stopped_by_string) return "stop";
  if (st && st->stop_reason() == gv1::STOP_REASON_STOP_TOKEN) return "stop";
  return "length";
}

std::string Event(const std::string& json) { return absl::StrCat("data: ", json, "\n\n"); }

// Runs the call to its end, sending nothing: one whole response.
void Respond(const ServerOptions& o, Job& job, GenerationCall& call, httplib::Response& res) {
  StopStrings stop(job.sampling.stop);
  std::string text = job.prompt_text;
  int64_t generated = 0;
  gv1::TokenChunk chunk;
  while (!stop.stopped() && call.Next(&chunk)) {
    generated += chunk.ids_size();
    text += stop.Push(chunk.text());
    if (stop.stopped()) call.Cancel();
  }
  text += stop.Flush();
  grpc::Status s = call.Finish();
  if (!s.ok() && !stop.stopped()) return SendError(res, FromGrpc(s));
  const Usage usage{static_cast<int64_t>(job.prompt.size()), generated};
  const std::string reason = FinishReason(stop.stopped(), call.stats());
  const int64_t created = std::time(nullptr);
  res.set_content(job.chat ? ChatCompletionBody(RandomId("chatcmpl-"), created, o.model_id, text,
                                                reason, usage)
                           : CompletionBody(RandomId("cmpl-"), created, o.model_id, text, reason,
                                            usage),
                  "application/json");
}

// Streams the call as server-sent events; a client that goes away cancels it.
bool StreamEvents(const ServerOptions& o, const Job& job, GenerationCall& call,
                  httplib::DataSink& sink) {
  const std::string id = RandomId(job.chat ? "chatcmpl-" : "cmpl-");
  const int64_t created = std::time(nullptr);
  auto write = [&](const std::string& event) { return sink.write(event.data(), event.size()); };
  auto send = [&](const std::string& text, const std::string* reason, const std::string* role) {
    return write(Event(job.chat ? ChatChunk(id, created, o.model_id, role, text, reason)
                                : CompletionChunk(id, created, o.model_id, text, reason)));
  };
  const std::string assistant = "assistant";
  bool open = job.chat ? send("", nullptr, &assistant) : true;
  if (open && !job.prompt_text.empty()) open = send(job.prompt_text, nullptr, nullptr);
  StopStrings stop(job.sampling.stop);
  int64_t generated = 0;
  gv1::TokenChunk chunk;
  while (open && !stop.stopped() && call.Next(&chunk)) {
    generated += chunk.ids_size();
    const std::string text = stop.Push(chunk.text());
    if (!text.empty()) open = send(text, nullptr, nullptr);
  }
  if (!open || stop.stopped()) call.Cancel();
  const grpc::Status s = call.Finish();
  if (!open) return false;  // the client is gone; the cancel freed its sequence
  const std::string rest = stop.Flush();
  if (!rest.empty()) send(rest, nullptr, nullptr);
  if (!s.ok() && !stop.stopped()) {
    write(Event(ErrorBody(FromGrpc(s))));
  } else {
    const std::string reason = FinishReason(stop.stopped(), call.stats());
    send("", &reason, nullptr);
    if (job.sampling.include_usage) {
      write(Event(UsageChunk(id, created, o.model_id, job.chat,
                             {static_cast<int64_t>(job.prompt.size()), generated})));
    }
  }
  write("data: [DONE]\n\n");
  sink.done();
  return true;
}

void Run(const ServerOptions& o, Job job, const std::string& authorization,
         httplib::Response& res) {
  FillRequest(o, job);
  auto call = std::make_shared<GenerationCall>(*o.generation, job.request, authorization);
  if (call->failed_early()) return SendError(res, FromGrpc(call->Finish()));
  if (!job.sampling.stream) return Respond(o, job, *call, res);
  auto shared_job = std::make_shared<Job>(std::move(job));
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", [&o, call, shared_job](size_t, httplib::DataSink& sink) {
        return StreamEvents(o, *shared_job, *call, sink);
      });
}

std::optional<ApiError> CheckModel(const ServerOptions& o, const std::string& model) {
  if (model == o.model_id) return std::nullopt;
  return ApiError{404, absl::StrCat("the model '", model, "' does not exist; this server serves '",
                                    o.model_id, "' (GET /v1/models)"),
                  "invalid_request_error", "model", "model_not_found"};
}

struct Handlers {
  ServerOptions o;
  std::optional<ChatTemplate> chat_template;  // set by Start
  std::string bos, eos;

  void Completions(const httplib::Request& req, httplib::Response& res) const {
    auto parsed = ParseCompletionRequest(req.body);
    if (auto* e = std::get_if<ApiError>(&parsed)) return SendError(res, *e);
    CompletionRequest& r = std::get<CompletionRequest>(parsed);
    if (auto e = CheckModel(o, r.sampling.model)) return SendError(res, *e);
    const std::string auth = req.get_header_value("Authorization");
    Job job;
    job.sampling = r.sampling;
    if (r.tokens) {
      job.prompt = *r.tokens;
    } else if (auto e = Tokenize(*o.generation, r.prompt, true, auth, &job.prompt)) {
      return SendError(res, *e);
    }
    if (r.echo && !r.tokens) job.prompt_text = r.prompt;
    Run(o, std::move(job), auth, res);
  }

  void Chat(const httplib::Request& req, httplib::Response& res) const {
    auto parsed = ParseChatRequest(req.body);
    if (auto* e = std::get_if<ApiError>(&parsed)) return SendError(res, *e);
    ChatRequest& r = std::get<ChatRequest>(parsed);
    if (auto e = CheckModel(o, r.sampling.model)) return SendError(res, *e);
    auto prompt = chat_template->Render(r.messages, /*add_generation_prompt=*/true, bos, eos);
    if (!prompt.ok()) {
      return SendError(res, Invalid("messages", std::string(prompt.status().message())));
    }
    const std::string auth = req.get_header_value("Authorization");
    Job job;
    job.sampling = r.sampling;
    job.chat = true;
    // The template writes the special tokens itself (BOS included), as transformers'
    // apply_chat_template does.
    if (auto e = Tokenize(*o.generation, *prompt, false, auth, &job.prompt)) {
      return SendError(res, *e);
    }
    Run(o, std::move(job), auth, res);
  }

  static ApiError Invalid(const std::string& param, const std::string& message) {
    return ApiError{400, message, "invalid_request_error", param, ""};
  }
};

void Route(httplib::Server& http, std::shared_ptr<const Handlers> h) {
  http.Post("/v1/completions", [h](const httplib::Request& q, httplib::Response& r) {
    h->Completions(q, r);
  });
  http.Post("/v1/chat/completions", [h](const httplib::Request& q, httplib::Response& r) {
    h->Chat(q, r);
  });
  http.Get("/v1/models", [h](const httplib::Request& q, httplib::Response& r) {
    // Through GetModelInfo, so that the bearer token is checked as for generation.
    grpc::ClientContext ctx;
    const std::string auth = q.get_header_value("Authorization");
    if (!auth.empty()) ctx.AddMetadata("authorization", auth);
    gv1::ModelInfo info;
    grpc::Status s = h->o.generation->GetModelInfo(&ctx, gv1::GetModelInfoRequest(), &info);
    if (!s.ok()) return SendError(r, FromGrpc(s));
    r.set_content(ModelsBody(h->o.model_id, 0), "application/json");
  });
  // Every error without a body of its own (404 of an unknown path, 413 of a body over
  // the limit, 400 of a malformed request line) gets the OpenAI error shape.
  http.set_error_handler([](const httplib::Request& q, httplib::Response& r) {
    if (!r.body.empty()) return;
    const std::string message = r.status == 404   ? absl::StrCat("no route ", q.method, " ", q.path)
                                : r.status == 413 ? "the request body is too large"
                                                  : "the request was not understood";
    SendError(r, ApiError{r.status, message, "invalid_request_error", "", ""});
  });
}

}  // namespace

absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& model_dir,
                                              std::string* bos_token, std::string* eos_token) {
  std::ifstream in(model_dir + "/tokenizer_config.json");
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    auto cfg = ReadTokenizerChatConfig(ss.str());
    if (cfg.ok()) {
      *bos_token = cfg->bos_token;
      *eos_token = cfg->eos_token;
      auto t = ChatTemplate::Parse(cfg->chat_template);
      if (!t.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            model_dir, "/tokenizer_config.json: chat_template: ", t.status().message()));
      }
      return t;
    }
    if (!absl::IsNotFound(cfg.status())) {
      return absl::InvalidArgumentError(
          absl::StrCat(model_dir, "/tokenizer_config.json: ", cfg.status().message()));
    }
  }
  return ChatTemplate::Parse(kFallbackTemplate);
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(ServerOptions options) {
  auto h = std::make_shared<Handlers>();
  auto t = LoadChatTemplate(options.model_dir, &h->bos, &h->eos);
  if (!t.ok()) return t.status();
  h->chat_template.emplace(*std::move(t));
  h->o = std::move(options);
  const ServerOptions& o = h->o;
  std::unique_ptr<Server> s(new Server());
  if (o.tls_cert_file.empty()) {
    s->http_ = std::make_unique<httplib::Server>();
  } else {
    auto https = std::make_unique<httplib::SSLServer>(
        o.tls_cert_file.c_str(), o.tls_key_file.c_str(),
        o.tls_client_ca_file.empty() ? nullptr : o.tls_client_ca_file.c_str());
    if (!https->is_valid()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the OpenAI API's TLS: cannot load ", o.tls_cert_file, " / ", o.tls_key_file,
          o.tls_client_ca_file.empty() ? "" : absl::StrCat(" / ", o.tls_client_ca_file)));
    }
    s->http_ = std::move(https);
  }
  const int threads = o.threads;
  s->http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s->http_->set_payload_max_length(o.max_body_bytes);
  Route(*s->http_, h);  // the routes own the handlers (and so the options)
  s->port_ = o.port == 0 ? s->http_->bind_to_any_port(o.host)
                         : (s->http_->bind_to_port(o.host, o.port) ? o.port : -1);
  if (s->port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for the OpenAI API on ", o.host, ":", o.port));
  }
  httplib::Server* http = s->http_.get();
  s->thread_ = std::thread([http] { http->listen_after_bind(); });
  return s;
}

Server::~Server() {
  http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace apr::cluster::openai
