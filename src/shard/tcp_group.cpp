// Ranks of processes over TCP, a star through rank 0 (see include/haste/shard/tcp_group.hpp).
//
// Wire format (host byte order): a rank > 0 opens with Hello; every collective then starts with
// a Header from each rank > 0 to rank 0 (which checks it against its own call), followed by the
// rank's data where the collective has any, and ends with rank 0's Header and result.
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <haste/error.hpp>
#include <haste/shard/tcp_group.hpp>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

namespace haste::shard {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr uint32_t kMagic = 0x48535445;  // "HSTE"
constexpr uint32_t kVersion = 1;
// The address file's fixed size (share_through_file tells a whole file by its size).
constexpr size_t kAddressFileBytes = 256;

struct Hello {
  uint32_t magic = kMagic, version = kVersion;
  uint32_t rank = 0, world_size = 0;
};

enum class Op : uint32_t {
  all_gather = 1,
  reduce_scatter,
  all_reduce_float,
  all_reduce_double,
  broadcast
};

const char* op_name(uint32_t op) {
  switch (static_cast<Op>(op)) {
    case Op::all_gather:
      return "all_gather";
    case Op::reduce_scatter:
      return "reduce_scatter";
    case Op::all_reduce_float:
      return "all_reduce (float)";
    case Op::all_reduce_double:
      return "all_reduce (double)";
    case Op::broadcast:
      return "broadcast";
  }
  return "an unknown collective";
}

struct Header {
  uint32_t magic = kMagic, op = 0;
  uint64_t count = 0;  // the values this rank sends (all_gather, reduce_scatter) or holds
};

long long seconds_of(milliseconds ms) { return (ms.count() + 999) / 1000; }

int milliseconds_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
}

// An owned socket descriptor, non-blocking (every wait goes through poll with a deadline).
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Socket& operator=(Socket&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Socket() { reset(); }
  int fd() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

void make_non_blocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }

void set_no_delay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// Why a transfer failed, or "" when it completed.
std::string send_bytes(int fd, const void* data, size_t size, Clock::time_point deadline) {
  const auto* bytes = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::send(fd, bytes, size, MSG_NOSIGNAL);
    if (n > 0) {
      bytes += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      return errno == EPIPE || errno == ECONNRESET
                 ? "the connection was closed (did that process exit? its own output says why)"
                 : std::string(std::strerror(errno));
    }
    pollfd p{fd, POLLOUT, 0};
    const int ready = ::poll(&p, 1, milliseconds_left(deadline));
    if (ready == 0) return "timed out";
    if (ready < 0 && errno != EINTR) return std::strerror(errno);
  }
  return "";
}

std::string receive_bytes(int fd, void* data, size_t size, Clock::time_point deadline) {
  auto* bytes = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t n = ::recv(fd, bytes, size, 0);
    if (n > 0) {
      bytes += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0 || (n < 0 && errno == ECONNRESET)) {
      return "the connection was closed (did that process exit? its own output says why)";
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return std::strerror(errno);
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, milliseconds_left(deadline));
    if (ready == 0) return "timed out";
    if (ready < 0 && errno != EINTR) return std::strerror(errno);
  }
  return "";
}

std::string host_name() {
  char name[256] = {};
  ::gethostname(name, sizeof(name) - 1);
  return name;
}

int parse_port(const char* variable, const char* text) {
  int port = -1;
  const std::string_view view(text);
  const auto [end, error] = std::from_chars(view.data(), view.data() + view.size(), port);
  check(error == std::errc() && end == view.data() + view.size() && port > 0 && port < 65536,
        "environment: {}='{}' is not a port (1-65535)", variable, text);
  return port;
}

// Rank 0's listening socket: dual-stack IPv6 when the host has it, else IPv4; all interfaces.
Socket listen_on(int port) {
  for (const int family : {AF_INET6, AF_INET}) {
    Socket s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) continue;
    const int one = 1, zero = 0;
    ::setsockopt(s.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int bound = -1;
    if (family == AF_INET6) {
      ::setsockopt(s.fd(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
      sockaddr_in6 address{};
      address.sin6_family = AF_INET6;
      address.sin6_addr = in6addr_any;
      address.sin6_port = htons(static_cast<uint16_t>(port));
      bound = ::bind(s.fd(), reinterpret_cast<sockaddr*>(&address), sizeof(address));
    } else {
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_addr.s_addr = htonl(INADDR_ANY);
      address.sin_port = htons(static_cast<uint16_t>(port));
      bound = ::bind(s.fd(), reinterpret_cast<sockaddr*>(&address), sizeof(address));
    }
    if (bound != 0) {
      const int error = errno;
      if (family == AF_INET6 && (error == EAFNOSUPPORT || error == EADDRNOTAVAIL)) continue;
      fail("shard: rank 0 cannot listen on port {}: {}{}", port, std::strerror(error),
           error == EADDRINUSE ? " (another program holds it: set HASTE_MASTER_PORT to a free "
                                 "port, the same on every rank)"
                               : "");
    }
    check(::listen(s.fd(), SOMAXCONN) == 0, "shard: rank 0 cannot listen on port {}: {}", port,
          std::strerror(errno));
    make_non_blocking(s.fd());
    return s;
  }
  fail("shard: rank 0 cannot open a TCP socket: {}", std::strerror(errno));
}

int bound_port(const Socket& s) {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  ::getsockname(s.fd(), reinterpret_cast<sockaddr*>(&address), &length);
  return address.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port)
                                       : ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
}

// One attempt to connect to host:port until `deadline`; an empty socket and the reason on failure.
Socket try_connect(const std::string& host, int port, Clock::time_point deadline,
                   std::string& why) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int error = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found)) {
    why = fmt::format("cannot resolve '{}': {}", host, ::gai_strerror(error));
    return {};
  }
  Socket connected;
  for (addrinfo* a = found; a != nullptr && !connected; a = a->ai_next) {
    Socket s(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (!s) continue;
    make_non_blocking(s.fd());
    if (::connect(s.fd(), a->ai_addr, a->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        why = std::strerror(errno);
        continue;
      }
      pollfd p{s.fd(), POLLOUT, 0};
      if (::poll(&p, 1, std::min(milliseconds_left(deadline), 2000)) <= 0) {
        why = "no answer";
        continue;
      }
      int error = 0;
      socklen_t length = sizeof(error);
      ::getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &error, &length);
      if (error != 0) {
        why = std::strerror(error);
        continue;
      }
    }
    connected = std::move(s);
  }
  ::freeaddrinfo(found);
  if (connected) set_no_delay(connected.fd());
  return connected;
}

// The address file's record: "haste-tcp <host> <port>", padded with spaces.
std::vector<uint8_t> address_record(const std::string& host, int port) {
  std::string text = fmt::format("haste-tcp {} {}\n", host, port);
  check(text.size() <= kAddressFileBytes, "shard: host name '{}' is too long", host);
  text.resize(kAddressFileBytes, ' ');
  return {text.begin(), text.end()};
}

std::optional<std::pair<std::string, int>> parse_address_record(const std::vector<uint8_t>& bytes) {
  const std::string text(bytes.begin(), bytes.end());
  char host[kAddressFileBytes] = {};
  int port = 0;
  if (std::sscanf(text.c_str(), "haste-tcp %255s %d", host, &port) != 2) return std::nullopt;
  return std::pair{std::string(host), port};
}

}  // namespace

std::string TcpRendezvous::describe() const {
  if (port != 0) return fmt::format("{}:{}", host, port);
  return fmt::format("the address in {}", address_file.string());
}

TcpRendezvous tcp_rendezvous_from_environment(const std::filesystem::path& address_file,
                                              const EnvironmentLookup& lookup) {
  auto get = [&](const char* name) -> const char* {
    const char* value = lookup ? lookup(name) : std::getenv(name);
    return value != nullptr && *value != '\0' ? value : nullptr;
  };
  TcpRendezvous where;
  if (const char* port = get("HASTE_MASTER_PORT")) {
    where.port = parse_port("HASTE_MASTER_PORT", port);
  } else if (const char* torch_port = get("MASTER_PORT")) {
    where.port = parse_port("MASTER_PORT", torch_port);
    const char* agent_store = get("TORCHELASTIC_USE_AGENT_STORE");
    if (agent_store != nullptr && std::string_view(agent_store) == "True") {
      check(where.port < 65535, "environment: MASTER_PORT={} leaves no port above it", where.port);
      ++where.port;  // torchrun's own store listens on MASTER_PORT
    }
  }
  const char* host = get("HASTE_MASTER_ADDR");
  if (host == nullptr) host = get("MASTER_ADDR");
  if (where.port != 0) {
    check(host != nullptr,
          "environment: a master port is set but neither HASTE_MASTER_ADDR nor MASTER_ADDR (rank "
          "0's host)");
    where.host = host;
    return where;
  }
  check(!address_file.empty(),
        "multi-process run: the ranks cannot meet: set MASTER_ADDR and MASTER_PORT (rank 0's "
        "host and a free port, as torchrun does) or give every rank the same --rendezvous FILE "
        "on a file system they all see");
  where.host = host != nullptr ? host : "";
  where.address_file = address_file;
  return where;
}

struct TcpGroup::Impl {
  int rank = 0, size = 1;
  TcpTimeouts timeouts;
  std::vector<Socket> peers;  // rank 0: peers[r] is rank r's connection; others: peers[0]
  std::vector<char> scratch;  // rank 0's staging of a peer's data
  bool broken = false;        // a collective failed: the byte stream is out of step

  int peer_fd(int r) const { return peers[static_cast<size_t>(r)].fd(); }

  [[noreturn]] void lost(int peer, const char* doing, uint32_t op, uint64_t count,
                         const std::string& why) {
    broken = true;
    fail("shard: rank {} of {}: {} rank {} during {} of {} values failed: {}{}", rank, size, doing,
         peer, op_name(op), count, why,
         why == "timed out" ? fmt::format(" after {} s (a peer that stopped answering: see its "
                                          "output; --rank-timeout sets the limit)",
                                          seconds_of(timeouts.collective))
                            : "");
  }

  void send(int peer, const void* data, size_t bytes, uint32_t op, uint64_t count,
            Clock::time_point deadline) {
    const std::string why = send_bytes(peer_fd(peer), data, bytes, deadline);
    if (!why.empty()) lost(peer, "sending to", op, count, why);
  }

  void receive(int peer, void* data, size_t bytes, uint32_t op, uint64_t count,
               Clock::time_point deadline) {
    const std::string why = receive_bytes(peer_fd(peer), data, bytes, deadline);
    if (!why.empty()) lost(peer, "receiving from", op, count, why);
  }

  // Rank 0: rank r's header, checked against this rank's call.
  void expect_header(int r, Op op, uint64_t count, Clock::time_point deadline) {
    Header header;
    receive(r, &header, sizeof(header), static_cast<uint32_t>(op), count, deadline);
    if (header.magic != kMagic || header.op != static_cast<uint32_t>(op) || header.count != count) {
      broken = true;
      fail(
          "shard: rank {} called {} with {} values where rank 0 called {} with {}: every rank "
          "must make the same calls (same build, data, config and flags)",
          r, op_name(header.op), header.count, op_name(static_cast<uint32_t>(op)), count);
    }
  }

  // Ranks > 0: the header of this rank's call, then rank 0's answer to it.
  void send_header(Op op, uint64_t count, Clock::time_point deadline) {
    const Header header{kMagic, static_cast<uint32_t>(op), count};
    send(0, &header, sizeof(header), header.op, count, deadline);
  }
  void expect_answer(Op op, uint64_t count, Clock::time_point deadline) {
    Header header;
    receive(0, &header, sizeof(header), static_cast<uint32_t>(op), count, deadline);
    if (header.magic != kMagic || header.op != static_cast<uint32_t>(op) || header.count != count) {
      broken = true;
      fail(
          "shard: rank {} got {} of {} values from rank 0 in answer to {} of {}: every rank "
          "must make the same calls",
          rank, op_name(header.op), header.count, op_name(static_cast<uint32_t>(op)), count);
    }
  }

  Clock::time_point begin(Op op) const {
    check(!broken, "shard: rank {}: {} after an earlier collective failed", rank,
          op_name(static_cast<uint32_t>(op)));
    return Clock::now() + timeouts.collective;
  }

  // Rank 0: sum[i] += rank r's values, for every r in rank order, streamed through scratch so
  // that only one chunk of a peer's data is held at a time. The sums' order is InProcessGroup's.
  template <typename T>
  void add_in_rank_order(std::span<T> sum, Op op, uint64_t count, Clock::time_point deadline) {
    constexpr size_t kChunk = (size_t{1} << 20) / sizeof(T);
    scratch.resize(std::min(sum.size(), kChunk) * sizeof(T));
    for (int r = 1; r < size; ++r) {
      expect_header(r, op, count, deadline);
      for (size_t first = 0; first < sum.size(); first += kChunk) {
        const size_t n = std::min(kChunk, sum.size() - first);
        receive(r, scratch.data(), n * sizeof(T), static_cast<uint32_t>(op), count, deadline);
        const T* values = reinterpret_cast<const T*>(scratch.data());
        for (size_t i = 0; i < n; ++i) sum[first + i] += values[i];
      }
    }
  }

  template <typename T>
  void all_reduce(std::span<T> data, Op op) {
    if (size == 1) return;
    const auto deadline = begin(op);
    const uint64_t count = data.size();
    if (rank == 0) {
      add_in_rank_order(data, op, count, deadline);
      const Header answer{kMagic, static_cast<uint32_t>(op), count};
      for (int r = 1; r < size; ++r) {
        send(r, &answer, sizeof(answer), answer.op, count, deadline);
        send(r, data.data(), data.size_bytes(), answer.op, count, deadline);
      }
      return;
    }
    send_header(op, count, deadline);
    send(0, data.data(), data.size_bytes(), static_cast<uint32_t>(op), count, deadline);
    expect_answer(op, count, deadline);
    receive(0, data.data(), data.size_bytes(), static_cast<uint32_t>(op), count, deadline);
  }
};

TcpGroup::TcpGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TcpGroup::~TcpGroup() = default;

std::unique_ptr<TcpGroup> TcpGroup::connect(const LaunchRank& launch, const TcpRendezvous& where,
                                            const TcpTimeouts& timeouts) {
  auto impl = std::make_unique<Impl>();
  impl->rank = launch.rank;
  impl->size = launch.world_size;
  impl->timeouts = timeouts;
  check(launch.world_size >= 1 && launch.rank >= 0 && launch.rank < launch.world_size,
        "shard: rank {} of {}", launch.rank, launch.world_size);
  if (launch.world_size == 1) return std::unique_ptr<TcpGroup>(new TcpGroup(std::move(impl)));
  const auto deadline = Clock::now() + timeouts.join;
  const int P = launch.world_size;

  if (launch.rank == 0) {
    Socket listener = listen_on(where.port);
    const int port = bound_port(listener);
    // Once every rank has read the address (or rank 0 gives up), the file goes: a later run
    // cannot mistake it for its own.
    struct RemoveFile {
      std::filesystem::path file;
      ~RemoveFile() {
        std::error_code ec;
        if (!file.empty()) std::filesystem::remove(file, ec);
      }
    } remove_address;
    if (where.port == 0) {
      const std::vector<uint8_t> record =
          address_record(where.host.empty() ? host_name() : where.host, port);
      share_through_file(where.address_file, 0, record, record.size(), timeouts.join);
      remove_address.file = where.address_file;
    }
    impl->peers.resize(P);
    int joined = 1;
    while (joined < P) {
      pollfd p{listener.fd(), POLLIN, 0};
      if (::poll(&p, 1, milliseconds_left(deadline)) <= 0 && Clock::now() >= deadline) {
        std::string missing;
        for (int r = 1; r < P; ++r) {
          if (!impl->peers[r]) missing += fmt::format("{}{}", missing.empty() ? "" : ", ", r);
        }
        fail(
            "shard: rank 0 of {} waited {} s on port {} for rank{} {} to connect: start every "
            "rank within --rank-timeout with the same rendezvous ({}); a rank that did not "
            "start says why in its own output",
            P, seconds_of(timeouts.join), port, P - joined > 1 ? "s" : "", missing,
            where.describe());
      }
      Socket peer(::accept4(listener.fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!peer) continue;
      set_no_delay(peer.fd());
      Hello hello;
      const auto hello_deadline = std::min(deadline, Clock::now() + milliseconds(10000));
      if (!receive_bytes(peer.fd(), &hello, sizeof(hello), hello_deadline).empty() ||
          hello.magic != kMagic) {
        continue;  // not one of ours (a port scan, a stale client): ignore it
      }
      check(hello.version == kVersion,
            "shard: rank {} speaks protocol version {}, rank 0 version {}: run the same haste "
            "build on every rank",
            hello.rank, hello.version, kVersion);
      check(hello.world_size == static_cast<uint32_t>(P),
            "shard: rank {} was started with world size {}, rank 0 with {}: every rank needs the "
            "same world size",
            hello.rank, hello.world_size, P);
      check(hello.rank >= 1 && hello.rank < static_cast<uint32_t>(P) && !impl->peers[hello.rank],
            "shard: two processes claim rank {} of {}: give every process its own rank", hello.rank,
            P);
      const Hello welcome{kMagic, kVersion, 0, static_cast<uint32_t>(P)};
      const std::string why = send_bytes(peer.fd(), &welcome, sizeof(welcome), hello_deadline);
      check(why.empty(), "shard: rank 0 lost rank {} while it joined: {}", hello.rank, why);
      impl->peers[hello.rank] = std::move(peer);
      ++joined;
    }
    return std::unique_ptr<TcpGroup>(new TcpGroup(std::move(impl)));
  }

  // Ranks > 0: connect (again and again while rank 0 is not listening yet), then say hello.
  std::string why = "rank 0 did not publish its address";
  std::string address = where.describe();
  auto delay = milliseconds(20);
  while (Clock::now() < deadline) {
    std::string host = where.host;
    int port = where.port;
    if (port == 0) {
      // A stale file (an earlier, crashed run's) names a dead port: read it again next time.
      const auto record = parse_address_record(share_through_file(
          where.address_file, launch.rank, {}, kAddressFileBytes,
          std::max(milliseconds(1),
                   std::chrono::duration_cast<milliseconds>(deadline - Clock::now()))));
      check(record.has_value(), "shard: {} is not a haste address file",
            where.address_file.string());
      std::tie(host, port) = *record;
      address = fmt::format("{}:{} (from {})", host, port, where.address_file.string());
    }
    Socket s = try_connect(host, port, deadline, why);
    if (s) {
      const Hello hello{kMagic, kVersion, static_cast<uint32_t>(launch.rank),
                        static_cast<uint32_t>(P)};
      Hello welcome;
      why = send_bytes(s.fd(), &hello, sizeof(hello), deadline);
      if (why.empty()) why = receive_bytes(s.fd(), &welcome, sizeof(welcome), deadline);
      if (why.empty() && welcome.magic == kMagic) {
        impl->peers.push_back(std::move(s));
        return std::unique_ptr<TcpGroup>(new TcpGroup(std::move(impl)));
      }
      // Rank 0 turned this rank away (it says why) or is not a haste rank 0.
      if (why.empty()) why = "the answer was not a haste rank 0's";
    }
    std::this_thread::sleep_for(
        std::min(delay, std::chrono::duration_cast<milliseconds>(deadline - Clock::now())));
    delay = std::min(delay * 2, milliseconds(500));
  }
  fail(
      "shard: rank {} of {} could not join rank 0 at {} within {} s (last error: {}): is rank 0 "
      "running, with the same rendezvous? (MASTER_ADDR/MASTER_PORT or --rendezvous)",
      launch.rank, P, address, seconds_of(timeouts.join), why);
}

int TcpGroup::rank() const { return impl_->rank; }
int TcpGroup::size() const { return impl_->size; }

void TcpGroup::all_reduce(std::span<float> data) { impl_->all_reduce(data, Op::all_reduce_float); }
void TcpGroup::all_reduce(std::span<double> data) {
  impl_->all_reduce(data, Op::all_reduce_double);
}

void TcpGroup::all_gather(std::span<const float> send, std::span<float> recv) {
  Impl& m = *impl_;
  const size_t n = send.size();
  check(recv.size() == n * static_cast<size_t>(m.size),
        "shard: all_gather of {} values into {} (need {} ranks x {})", n, recv.size(), m.size, n);
  const std::span<float> mine = recv.subspan(static_cast<size_t>(m.rank) * n, n);
  if (mine.data() != send.data()) std::copy(send.begin(), send.end(), mine.begin());
  if (m.size == 1) return;
  const auto op = static_cast<uint32_t>(Op::all_gather);
  const auto deadline = m.begin(Op::all_gather);
  if (m.rank == 0) {
    for (int r = 1; r < m.size; ++r) {
      m.expect_header(r, Op::all_gather, n, deadline);
      m.receive(r, recv.data() + static_cast<size_t>(r) * n, n * sizeof(float), op, n, deadline);
    }
    const Header answer{kMagic, op, n};
    for (int r = 1; r < m.size; ++r) {
      m.send(r, &answer, sizeof(answer), op, n, deadline);
      m.send(r, recv.data(), recv.size_bytes(), op, n, deadline);
    }
    return;
  }
  m.send_header(Op::all_gather, n, deadline);
  m.send(0, send.data(), send.size_bytes(), op, n, deadline);
  m.expect_answer(Op::all_gather, n, deadline);
  m.receive(0, recv.data(), recv.size_bytes(), op, n, deadline);
}

void TcpGroup::reduce_scatter(std::span<const float> send, std::span<float> recv) {
  Impl& m = *impl_;
  const size_t n = recv.size();
  check(send.size() == n * static_cast<size_t>(m.size),
        "shard: reduce_scatter of {} values into {} (need {} ranks x {})", send.size(), n, m.size,
        n);
  if (m.size == 1) {
    std::copy(send.begin(), send.end(), recv.begin());
    return;
  }
  const auto op = static_cast<uint32_t>(Op::reduce_scatter);
  const auto deadline = m.begin(Op::reduce_scatter);
  if (m.rank == 0) {
    std::vector<float> sum(send.begin(), send.end());
    m.add_in_rank_order(std::span<float>(sum), Op::reduce_scatter, send.size(), deadline);
    std::copy_n(sum.begin(), n, recv.begin());
    const Header answer{kMagic, op, send.size()};
    for (int r = 1; r < m.size; ++r) {
      m.send(r, &answer, sizeof(answer), op, send.size(), deadline);
      m.send(r, sum.data() + static_cast<size_t>(r) * n, n * sizeof(float), op, send.size(),
             deadline);
    }
    return;
  }
  m.send_header(Op::reduce_scatter, send.size(), deadline);
  m.send(0, send.data(), send.size_bytes(), op, send.size(), deadline);
  m.expect_answer(Op::reduce_scatter, send.size(), deadline);
  m.receive(0, recv.data(), recv.size_bytes(), op, send.size(), deadline);
}

void TcpGroup::broadcast(std::span<float> data) {
  Impl& m = *impl_;
  if (m.size == 1) return;
  const auto op = static_cast<uint32_t>(Op::broadcast);
  const auto deadline = m.begin(Op::broadcast);
  if (m.rank == 0) {
    for (int r = 1; r < m.size; ++r) m.expect_header(r, Op::broadcast, data.size(), deadline);
    const Header answer{kMagic, op, data.size()};
    for (int r = 1; r < m.size; ++r) {
      m.send(r, &answer, sizeof(answer), op, data.size(), deadline);
      m.send(r, data.data(), data.size_bytes(), op, data.size(), deadline);
    }
    return;
  }
  m.send_header(Op::broadcast, data.size(), deadline);
  m.expect_answer(Op::broadcast, data.size(), deadline);
  m.receive(0, data.data(), data.size_bytes(), op, data.size(), deadline);
}

}  // namespace haste::shard
