#include "backends/cuda/fd_exchange.h"

#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <type_traits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "backends/cuda/unique_fd.h"

namespace dwdp::cuda {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kAgreementMagic = 0x58465744;  // "DWFX"
constexpr uint32_t kMessageMagic = 0x4D465744;    // "DWFM"
constexpr uint32_t kProtocolVersion = 1;
constexpr int kKernelMaxFdsPerMessage = 253;  // SCM_MAX_FD
// How often a refused or backlogged connect, or a send the kernel refused for too many fds in
// flight (ETOOMANYREFS: the receivers have not drained theirs yet), is tried again.
constexpr auto kRetryInterval = std::chrono::milliseconds(5);

std::string ErrnoText(int err) { return absl::StrFormat("%s (errno %d)", std::strerror(err), err); }

std::string Seconds(double seconds) { return absl::StrFormat("%g s", seconds); }

class ByteWriter {
 public:
  template <typename T>
  void Put(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const uint8_t*>(&value);
    bytes_.insert(bytes_.end(), p, p + sizeof(T));
  }
  void PutString(const std::string& text) {
    Put<uint32_t>(static_cast<uint32_t>(text.size()));
    bytes_.insert(bytes_.end(), text.begin(), text.end());
  }
  std::vector<uint8_t> Take() { return std::move(bytes_); }

 private:
  std::vector<uint8_t> bytes_;
};

class ByteReader {
 public:
  explicit ByteReader(const std::vector<uint8_t>& bytes) : bytes_(bytes) {}
  template <typename T>
  bool Get(T* value) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (bytes_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(value, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool GetString(std::string* text) {
    uint32_t size = 0;
    if (!Get(&size) || bytes_.size() - pos_ < size) return false;
    text->assign(reinterpret_cast<const char*>(bytes_.data() + pos_), size);
    pos_ += size;
    return true;
  }

 private:
  const std::vector<uint8_t>& bytes_;
  size_t pos_ = 0;
};

// What each rank tells the others before any socket traffic.
struct RankInfo {
  uint64_t listen_nonce = 0;  // names this rank's socket
  uint64_t group_nonce = 0;   // group rank 0's value authenticates every message
  uint64_t handle_count = 0;
  uint32_t uid = 0;
  int32_t pid = 0;
  std::string hostname;
};

std::vector<uint8_t> EncodeRankInfo(const RankInfo& info) {
  ByteWriter writer;
  writer.Put(kAgreementMagic);
  writer.Put(kProtocolVersion);
  writer.Put(info.listen_nonce);
  writer.Put(info.group_nonce);
  writer.Put(info.handle_count);
  writer.Put(info.uid);
  writer.Put(info.pid);
  writer.PutString(info.hostname);
  return writer.Take();
}

absl::StatusOr<RankInfo> DecodeRankInfo(const std::vector<uint8_t>& bytes, int64_t rank) {
  ByteReader reader(bytes);
  uint32_t magic = 0;
  uint32_t version = 0;
  RankInfo info;
  if (!reader.Get(&magic) || !reader.Get(&version) || magic != kAgreementMagic ||
      version != kProtocolVersion || !reader.Get(&info.listen_nonce) ||
      !reader.Get(&info.group_nonce) || !reader.Get(&info.handle_count) || !reader.Get(&info.uid) ||
      !reader.Get(&info.pid) || !reader.GetString(&info.hostname)) {
    return absl::DataLossError(absl::StrFormat(
        "the fd exchange agreement from rank %d is malformed (a different dwdp build?)", rank));
  }
  return info;
}

uint64_t RandomNonce() {
  std::random_device device;  // /dev/urandom on Linux
  uint64_t value = 0;
  while (value == 0) value = (uint64_t{device()} << 32) ^ device();
  return value;
}

std::string SocketName(uint64_t listen_nonce, int64_t rank) {
  return absl::StrFormat("dwdp-fdx-%016x-%d", listen_nonce, rank);
}

// An abstract-namespace address (leading NUL): nothing on disk to clean up after a crash.
std::pair<sockaddr_un, socklen_t> AbstractAddress(const std::string& name) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const size_t length = std::min(name.size(), sizeof(address.sun_path) - 1);
  std::memcpy(address.sun_path + 1, name.data(), length);
  return {address, static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + length)};
}

absl::StatusOr<UniqueFd> NewSocket() {
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    return absl::InternalError(absl::StrCat("socket(AF_UNIX): ", ErrnoText(errno)));
  }
  return fd;
}

absl::StatusOr<UniqueFd> Listen(const std::string& name, int backlog) {
  absl::StatusOr<UniqueFd> fd = NewSocket();
  if (!fd.ok()) return fd.status();
  auto [address, length] = AbstractAddress(name);
  if (::bind(fd->get(), reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    return absl::InternalError(
        absl::StrFormat("bind of exchange socket @%s: %s", name, ErrnoText(errno)));
  }
  if (::listen(fd->get(), backlog) != 0) {
    return absl::InternalError(
        absl::StrFormat("listen on exchange socket @%s: %s", name, ErrnoText(errno)));
  }
  return fd;
}

struct MessageHeader {
  uint32_t magic = kMessageMagic;
  uint32_t version = kProtocolVersion;
  uint64_t group_nonce = 0;
  int32_t sender_rank = 0;
  uint32_t first_index = 0;  // of the first handle in this message, in the agreed order
  uint32_t count = 0;        // handles (and fds) in this message
  uint32_t total = 0;        // handles the sender sends in all
};
struct WireHandle {
  uint64_t bytes = 0;
  int64_t owner_rank = 0;
};
constexpr size_t kMaxMessageBytes =
    sizeof(MessageHeader) + kKernelMaxFdsPerMessage * sizeof(WireHandle);

// One exchange, run to completion by a single-threaded poll loop: every rank sends to and
// receives from every peer at the same time, so no ordering between ranks can deadlock.
class ExchangeSession {
 public:
  ExchangeSession(int64_t rank, int64_t size, const HandleExchangeOptions& options,
                  uid_t allowed_uid, uint64_t group_nonce)
      : rank_(rank),
        size_(size),
        options_(options),
        allowed_uid_(allowed_uid),
        group_nonce_(group_nonce),
        inbox_(size),
        receive_buffer_(kMaxMessageBytes) {}

  absl::Status Run(UniqueFd listener, const std::vector<RankInfo>& infos,
                   const std::vector<SharedHandle>& mine);

  std::vector<SharedHandle> TakeInbox(int64_t rank) {
    return std::move(inbox_[static_cast<size_t>(rank)].handles);
  }

 private:
  struct Outgoing {
    int64_t rank = 0;
    std::string name;
    UniqueFd socket;
    size_t next = 0;  // index of the next handle to send
    bool sent_any = false;
    bool done = false;
    bool want_write = false;
    bool gone = false;  // its listener refused the connection
    Clock::time_point retry_at{};
    std::string last_error;
  };
  struct Inbox {
    std::vector<SharedHandle> handles;
    uint64_t expected = 0;
    uint64_t received = 0;
    bool seen = false;  // a message arrived
    bool complete = false;
  };
  struct Incoming {
    UniqueFd socket;
    int64_t rank = -1;  // unknown until its first message
  };

  void TryConnect(Outgoing& out, Clock::time_point now);
  absl::Status SendSome(Outgoing& out, const std::vector<SharedHandle>& mine,
                        Clock::time_point now);
  absl::Status AcceptAll();
  // Reads what incoming connection `index` has; appends it to *closed when the peer closed it
  // (an error when that peer's handles are incomplete).
  absl::Status ReadIncoming(size_t index, std::vector<size_t>* closed);
  void EraseIncoming(std::vector<size_t>& closed);
  // Called when `peer` closed the connection we sent our handles on. A peer keeps that end open
  // until its own exchange ends, and it can only succeed after sending us everything, so its
  // handles are queued on our side by now (in a socket, or a connection waiting in the accept
  // queue): read all of that; if none of its handles is there, the peer exited or failed.
  absl::Status CheckPeerAfterHangUp(int64_t peer);
  // Reads what `in` has; sets *closed when the peer closed its end.
  absl::Status ReceiveSome(Incoming& in, bool* closed);
  absl::Status Deliver(Incoming& in, const MessageHeader& header, const WireHandle* handles,
                       std::vector<UniqueFd>& fds);
  bool AllReceived() const;
  std::string DescribeTimeout() const;
  // `message` followed by the connections this rank turned away, which often explain why a
  // peer gave up.
  std::string WithRejections(std::string message) const;

  int64_t rank_;
  int64_t size_;
  HandleExchangeOptions options_;
  uid_t allowed_uid_;
  uint64_t group_nonce_;
  UniqueFd listener_;
  std::vector<Outgoing> outgoing_;
  std::vector<Incoming> incoming_;
  std::vector<Inbox> inbox_;
  std::vector<uint8_t> receive_buffer_;
  std::vector<std::string> rejected_;  // connections turned away (other uid)
};

void ExchangeSession::TryConnect(Outgoing& out, Clock::time_point now) {
  if (out.socket.valid() || out.done || now < out.retry_at) return;
  absl::StatusOr<UniqueFd> fd = NewSocket();
  if (!fd.ok()) {
    out.last_error = std::string(fd.status().message());
    out.retry_at = now + kRetryInterval;
    return;
  }
  auto [address, length] = AbstractAddress(out.name);
  if (::connect(fd->get(), reinterpret_cast<const sockaddr*>(&address), length) == 0) {
    out.socket = std::move(*fd);
    out.want_write = true;
    return;
  }
  // Unix sockets connect at once or not at all. EAGAIN is a full backlog: retried until the
  // deadline. ECONNREFUSED means no listener, and every rank listened before the agreement, so
  // the peer's socket is gone: it exited or gave up.
  const int err = errno;
  out.last_error = ErrnoText(err);
  out.retry_at = now + kRetryInterval;
  if (err == ECONNREFUSED) out.gone = true;
}

absl::Status ExchangeSession::SendSome(Outgoing& out, const std::vector<SharedHandle>& mine,
                                       Clock::time_point now) {
  const int batch_limit = std::clamp(options_.max_fds_per_message, 1, kKernelMaxFdsPerMessage);
  while (!out.done && out.want_write && now >= out.retry_at) {
    const size_t count = std::min<size_t>(batch_limit, mine.size() - out.next);
    MessageHeader header;
    header.group_nonce = group_nonce_;
    header.sender_rank = static_cast<int32_t>(rank_);
    header.first_index = static_cast<uint32_t>(out.next);
    header.count = static_cast<uint32_t>(count);
    header.total = static_cast<uint32_t>(mine.size());
    WireHandle wire[kKernelMaxFdsPerMessage];
    int fds[kKernelMaxFdsPerMessage];
    for (size_t i = 0; i < count; ++i) {
      const SharedHandle& handle = mine[out.next + i];
      wire[i] = {handle.bytes(), handle.owner_rank()};
      fds[i] = handle.fd();
    }
    iovec iov[2] = {{&header, sizeof(header)}, {wire, count * sizeof(WireHandle)}};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kKernelMaxFdsPerMessage)];
    msghdr message{};
    message.msg_iov = iov;
    message.msg_iovlen = count > 0 ? 2 : 1;
    if (count > 0) {
      std::memset(control, 0, sizeof(control));
      message.msg_control = control;
      message.msg_controllen = CMSG_SPACE(sizeof(int) * count);
      cmsghdr* cmsg = CMSG_FIRSTHDR(&message);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int) * count);
      std::memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * count);
    }
    const ssize_t sent = ::sendmsg(out.socket.get(), &message, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        out.want_write = false;  // poll says when there is room again
        return absl::OkStatus();
      }
      if (err == ETOOMANYREFS || err == ENOBUFS) {
        out.retry_at = now + kRetryInterval;
        out.last_error = ErrnoText(err);
        return absl::OkStatus();
      }
      return absl::UnavailableError(WithRejections(absl::StrFormat(
          "rank %d closed its exchange socket while rank %d was sending it handle %d of %d: %s "
          "(the process probably exited)",
          out.rank, rank_, out.next, mine.size(), ErrnoText(err))));
    }
    const size_t expected_bytes = sizeof(header) + count * sizeof(WireHandle);
    if (static_cast<size_t>(sent) != expected_bytes) {
      return absl::InternalError(
          absl::StrFormat("sending handles to rank %d: sendmsg wrote %d of %d bytes of a packet",
                          out.rank, sent, expected_bytes));
    }
    out.sent_any = true;
    out.next += count;
    if (out.next == mine.size()) {
      out.done = true;
      // The socket stays open: its hang-up tells when the peer's exchange ended.
    }
  }
  return absl::OkStatus();
}

absl::Status ExchangeSession::AcceptAll() {
  while (listener_.valid()) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd.valid()) {
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) return absl::OkStatus();
      if (err == EINTR || err == ECONNABORTED) continue;
      return absl::InternalError(
          absl::StrFormat("accept on rank %d's exchange socket: %s", rank_, ErrnoText(err)));
    }
    // A process of another user is turned away and remembered (a stranger must not be able to
    // end the exchange early); the timeout message lists it should a peer never arrive.
    absl::Status uid_ok = CheckPeerUid(fd.get(), allowed_uid_);
    if (!uid_ok.ok()) {
      rejected_.push_back(std::string(uid_ok.message()));
      continue;
    }
    incoming_.push_back(Incoming{std::move(fd), -1});
  }
  return absl::OkStatus();
}

absl::Status ExchangeSession::ReceiveSome(Incoming& in, bool* closed) {
  *closed = false;
  while (true) {
    iovec iov{receive_buffer_.data(), receive_buffer_.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kKernelMaxFdsPerMessage)];
    msghdr message{};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    const ssize_t received = ::recvmsg(in.socket.get(), &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (received < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) return absl::OkStatus();
      if (err == ECONNRESET) {
        *closed = true;
        return absl::OkStatus();
      }
      return absl::InternalError(
          absl::StrFormat("receiving handles on rank %d: %s", rank_, ErrnoText(err)));
    }
    // Own every fd that arrived before looking at anything else, so that an error closes them.
    std::vector<UniqueFd> fds;
    if (message.msg_controllen > 0) {
      for (cmsghdr* cmsg = CMSG_FIRSTHDR(&message); cmsg != nullptr;
           cmsg = CMSG_NXTHDR(&message, cmsg)) {
        if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
        const size_t n = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; ++i) {
          int fd = -1;
          std::memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
          fds.emplace_back(fd);
        }
      }
    }
    if (received == 0) {
      *closed = true;
      return absl::OkStatus();
    }
    if (message.msg_flags & MSG_CTRUNC) {
      rlimit limit{};
      ::getrlimit(RLIMIT_NOFILE, &limit);
      return absl::ResourceExhaustedError(absl::StrFormat(
          "rank %d received a batch of handles from rank %d with some fds dropped by the kernel "
          "(MSG_CTRUNC): the open-file limit (RLIMIT_NOFILE %d) is too low; raise it (ulimit -n)",
          rank_, in.rank, static_cast<uint64_t>(limit.rlim_cur)));
    }
    if ((message.msg_flags & MSG_TRUNC) || static_cast<size_t>(received) < sizeof(MessageHeader)) {
      return absl::DataLossError(absl::StrFormat(
          "rank %d received a malformed exchange message of %d bytes", rank_, received));
    }
    MessageHeader header;
    std::memcpy(&header, receive_buffer_.data(), sizeof(header));
    if (header.magic != kMessageMagic || header.version != kProtocolVersion ||
        header.group_nonce != group_nonce_) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "rank %d received an exchange message that does not belong to this group (wrong "
          "magic, version or nonce): another dwdp job of the same user on this node?",
          rank_));
    }
    if (static_cast<size_t>(received) != sizeof(header) + header.count * sizeof(WireHandle) ||
        header.count != fds.size()) {
      return absl::DataLossError(absl::StrFormat(
          "rank %d received a message from rank %d announcing %d handles with %d bytes and %d "
          "fds",
          rank_, header.sender_rank, header.count, received, fds.size()));
    }
    WireHandle wire[kKernelMaxFdsPerMessage];
    std::memcpy(wire, receive_buffer_.data() + sizeof(header), header.count * sizeof(WireHandle));
    absl::Status delivered = Deliver(in, header, wire, fds);
    if (!delivered.ok()) return delivered;
  }
}

absl::Status ExchangeSession::Deliver(Incoming& in, const MessageHeader& header,
                                      const WireHandle* handles, std::vector<UniqueFd>& fds) {
  const int64_t sender = header.sender_rank;
  if (sender < 0 || sender >= size_ || sender == rank_ || (in.rank >= 0 && in.rank != sender)) {
    return absl::DataLossError(absl::StrFormat(
        "rank %d received handles claiming to come from rank %d on a connection of rank %d", rank_,
        sender, in.rank));
  }
  in.rank = sender;
  Inbox& inbox = inbox_[static_cast<size_t>(sender)];
  if (header.total != inbox.expected || header.first_index != inbox.received ||
      inbox.received + header.count > inbox.expected) {
    return absl::DataLossError(absl::StrFormat(
        "rank %d received handles [%d, %d) of %d from rank %d, expected the batch at %d of %d",
        rank_, header.first_index, header.first_index + header.count, header.total, sender,
        inbox.received, inbox.expected));
  }
  inbox.seen = true;
  for (uint32_t i = 0; i < header.count; ++i) {
    SharedHandle handle(HandleKind::kPosixFd, handles[i].owner_rank, handles[i].bytes);
    handle.set_fd(fds[i].release());
    inbox.handles.push_back(std::move(handle));
  }
  inbox.received += header.count;
  inbox.complete = inbox.received == inbox.expected;
  return absl::OkStatus();
}

std::string ExchangeSession::WithRejections(std::string message) const {
  for (const std::string& rejected : rejected_) absl::StrAppend(&message, "; ", rejected);
  return message;
}

bool ExchangeSession::AllReceived() const {
  for (int64_t r = 0; r < size_; ++r) {
    if (r != rank_ && !inbox_[static_cast<size_t>(r)].complete) return false;
  }
  return true;
}

std::string ExchangeSession::DescribeTimeout() const {
  const std::string within = Seconds(options_.timeout_seconds);
  std::vector<std::string> problems;
  for (int64_t r = 0; r < size_; ++r) {
    const Inbox& inbox = inbox_[static_cast<size_t>(r)];
    if (r == rank_ || inbox.complete) continue;
    if (!inbox.seen) {
      problems.push_back(absl::StrFormat("rank %d never connected within %s", r, within));
    } else {
      problems.push_back(absl::StrFormat("rank %d sent only %d of %d handles within %s", r,
                                         inbox.received, inbox.expected, within));
    }
  }
  for (const Outgoing& out : outgoing_) {
    if (out.done) continue;
    if (!out.sent_any && !out.socket.valid()) {
      problems.push_back(
          absl::StrFormat("rank %d's socket could not be reached (%s)", out.rank, out.last_error));
    } else {
      problems.push_back(
          absl::StrFormat("sending to rank %d stalled after %d handles", out.rank, out.next));
    }
  }
  for (const std::string& rejected : rejected_) problems.push_back(rejected);
  return absl::StrFormat("fd exchange on rank %d of %d: %s", rank_, size_,
                         absl::StrJoin(problems, "; "));
}

absl::Status ExchangeSession::Run(UniqueFd listener, const std::vector<RankInfo>& infos,
                                  const std::vector<SharedHandle>& mine) {
  listener_ = std::move(listener);
  for (int64_t r = 0; r < size_; ++r) {
    inbox_[static_cast<size_t>(r)].expected = infos[static_cast<size_t>(r)].handle_count;
    if (r == rank_) continue;
    Outgoing out;
    out.rank = r;
    out.name = SocketName(infos[static_cast<size_t>(r)].listen_nonce, r);
    outgoing_.push_back(std::move(out));
  }
  const Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(options_.timeout_seconds));
  std::vector<pollfd> polls;
  // What each pollfd entry watches.
  enum class Watched { kListener, kIncoming, kOutgoing };
  std::vector<std::pair<Watched, size_t>> owners;
  while (true) {
    bool all_sent = true;
    for (const Outgoing& out : outgoing_) all_sent = all_sent && out.done;
    const bool all_received = AllReceived();
    if (all_received) listener_.reset();  // nobody else may connect
    if (all_sent && all_received) return absl::OkStatus();

    Clock::time_point now = Clock::now();
    if (now >= deadline) return absl::DeadlineExceededError(DescribeTimeout());
    for (Outgoing& out : outgoing_) {
      TryConnect(out, now);
      if (out.gone) {
        return absl::UnavailableError(WithRejections(absl::StrFormat(
            "fd exchange on rank %d of %d: rank %d is gone: its exchange socket refuses "
            "connections (%s), so the process exited or failed before sending its handles",
            rank_, size_, out.rank, out.last_error)));
      }
      if (out.socket.valid()) {
        absl::Status sent = SendSome(out, mine, now);
        if (!sent.ok()) return sent;
      }
    }

    polls.clear();
    owners.clear();
    if (listener_.valid()) {
      polls.push_back({listener_.get(), POLLIN, 0});
      owners.emplace_back(Watched::kListener, 0);
    }
    for (size_t i = 0; i < incoming_.size(); ++i) {
      polls.push_back({incoming_[i].socket.get(), POLLIN, 0});
      owners.emplace_back(Watched::kIncoming, i);
    }
    bool timer_pending = false;
    for (size_t i = 0; i < outgoing_.size(); ++i) {
      const Outgoing& out = outgoing_[i];
      if (out.done) {
        if (out.socket.valid()) {
          polls.push_back({out.socket.get(), 0, 0});  // hang-up only
          owners.emplace_back(Watched::kOutgoing, i);
        }
        continue;
      }
      if (!out.socket.valid() || out.want_write) {
        timer_pending = true;  // a connect or a send is due at retry_at
      } else {
        polls.push_back({out.socket.get(), POLLOUT, 0});
        owners.emplace_back(Watched::kOutgoing, i);
      }
    }
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    if (timer_pending) wait = std::min(wait, std::chrono::milliseconds(kRetryInterval));
    const int ready =
        ::poll(polls.data(), polls.size(), static_cast<int>(std::max<int64_t>(1, wait.count())));
    if (ready < 0 && errno != EINTR) {
      return absl::InternalError(absl::StrCat("poll in the fd exchange: ", ErrnoText(errno)));
    }
    if (ready <= 0) continue;

    std::vector<size_t> closed_incoming;
    std::vector<int64_t> hung_up;
    for (size_t p = 0; p < polls.size(); ++p) {
      if (polls[p].revents == 0) continue;
      const auto [watched, index] = owners[p];
      if (watched == Watched::kListener) {
        if (absl::Status s = AcceptAll(); !s.ok()) return s;
      } else if (watched == Watched::kIncoming) {
        if (absl::Status s = ReadIncoming(index, &closed_incoming); !s.ok()) return s;
      } else {
        Outgoing& out = outgoing_[index];
        if (!out.done) {
          // Writable again (or hung up: the next sendmsg reports EPIPE with the peer's rank).
          out.want_write = true;
        } else if (polls[p].revents & (POLLHUP | POLLERR)) {
          out.socket.reset();
          hung_up.push_back(out.rank);
        }
      }
    }
    EraseIncoming(closed_incoming);
    for (int64_t peer : hung_up) {
      if (absl::Status s = CheckPeerAfterHangUp(peer); !s.ok()) return s;
    }
  }
}

absl::Status ExchangeSession::ReadIncoming(size_t index, std::vector<size_t>* closed) {
  Incoming& in = incoming_[index];
  bool eof = false;
  if (absl::Status s = ReceiveSome(in, &eof); !s.ok()) return s;
  if (!eof) return absl::OkStatus();
  if (in.rank >= 0 && !inbox_[static_cast<size_t>(in.rank)].complete) {
    const Inbox& inbox = inbox_[static_cast<size_t>(in.rank)];
    return absl::UnavailableError(absl::StrFormat(
        "fd exchange on rank %d of %d: rank %d closed its connection after sending %d of %d "
        "handles (the process probably exited)",
        rank_, size_, in.rank, inbox.received, inbox.expected));
  }
  closed->push_back(index);
  return absl::OkStatus();
}

void ExchangeSession::EraseIncoming(std::vector<size_t>& closed) {
  // Back to front, so that the indices stay valid.
  std::sort(closed.rbegin(), closed.rend());
  closed.erase(std::unique(closed.begin(), closed.end()), closed.end());
  for (size_t index : closed) {
    incoming_.erase(incoming_.begin() + static_cast<std::ptrdiff_t>(index));
  }
  closed.clear();
}

absl::Status ExchangeSession::CheckPeerAfterHangUp(int64_t peer) {
  const Inbox& inbox = inbox_[static_cast<size_t>(peer)];
  if (inbox.complete) return absl::OkStatus();
  if (absl::Status s = AcceptAll(); !s.ok()) return s;
  std::vector<size_t> closed;
  for (size_t i = 0; i < incoming_.size(); ++i) {
    if (absl::Status s = ReadIncoming(i, &closed); !s.ok()) return s;
  }
  EraseIncoming(closed);
  if (inbox.seen) return absl::OkStatus();  // the rest is queued, or its EOF is an error above
  return absl::UnavailableError(WithRejections(absl::StrFormat(
      "fd exchange on rank %d of %d: rank %d hung up without sending any of its %d handles, so "
      "the process exited or failed",
      rank_, size_, peer, inbox.expected)));
}

}  // namespace

absl::Status CheckPeerUid(int socket_fd, uid_t allowed_uid) {
  ucred credentials{};
  socklen_t length = sizeof(credentials);
  if (::getsockopt(socket_fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
    return absl::InternalError(absl::StrCat("getsockopt(SO_PEERCRED): ", ErrnoText(errno)));
  }
  if (credentials.uid != allowed_uid) {
    return absl::PermissionDeniedError(
        absl::StrFormat("turned away a connection from pid %d of uid %d (only uid %d may connect)",
                        credentials.pid, credentials.uid, allowed_uid));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> RaiseOpenFileLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::InternalError(absl::StrCat("getrlimit(RLIMIT_NOFILE): ", ErrnoText(errno)));
  }
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return static_cast<uint64_t>(limit.rlim_cur);
}

HandleExchangeOptions WithEnvironmentHooks(HandleExchangeOptions options) {
  if (options.exit_after_export_rank < 0) {
    const char* value = std::getenv("DWDP_TEST_EXIT_AFTER_EXPORT_RANK");
    int64_t rank = -1;
    if (value != nullptr && absl::SimpleAtoi(value, &rank)) options.exit_after_export_rank = rank;
  }
  return options;
}

FdHandleExchange::FdHandleExchange(Comm& group, HandleExchangeOptions options)
    : group_(group), options_(std::move(options)) {}

absl::StatusOr<std::vector<std::vector<std::vector<SharedHandle>>>> FdHandleExchange::Exchange(
    std::vector<std::vector<SharedHandle>> exported) {
  const int64_t rank = group_.rank();
  const int64_t size = group_.size();
  if (exported.size() != 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "the fd exchange hosts one rank per process, got handles of %d ranks", exported.size()));
  }
  std::vector<SharedHandle>& mine = exported[0];
  for (size_t i = 0; i < mine.size(); ++i) {
    if (mine[i].kind() != HandleKind::kPosixFd || mine[i].fd() < 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("handle %d of rank %d is not an exported POSIX fd (kind %s, fd %d)", i,
                          rank, HandleKindName(mine[i].kind()), mine[i].fd()));
    }
  }
  if (mine.size() > UINT32_MAX) {
    return absl::InvalidArgumentError("too many handles for one exchange");
  }

  // Listen before the agreement, so that every socket exists once the names are known.
  RankInfo me;
  me.listen_nonce = RandomNonce();
  me.group_nonce = rank == 0 ? RandomNonce() : 0;
  me.handle_count = mine.size();
  me.uid = static_cast<uint32_t>(::geteuid());
  me.pid = static_cast<int32_t>(::getpid());
  char hostname[256] = {};
  ::gethostname(hostname, sizeof(hostname) - 1);
  me.hostname = hostname;
  absl::StatusOr<UniqueFd> listener =
      Listen(SocketName(me.listen_nonce, rank), static_cast<int>(std::max<int64_t>(size, 16)));
  if (!listener.ok()) {
    return absl::Status(
        listener.status().code(),
        absl::StrFormat("fd exchange on rank %d: %s", rank, listener.status().message()));
  }

  absl::StatusOr<std::vector<std::vector<uint8_t>>> gathered = group_.Allgather(EncodeRankInfo(me));
  if (!gathered.ok()) {
    return absl::Status(gathered.status().code(),
                        absl::StrFormat("fd exchange on rank %d, agreeing on socket names: %s",
                                        rank, gathered.status().message()));
  }
  if (static_cast<int64_t>(gathered->size()) != size) {
    return absl::InternalError(
        absl::StrFormat("allgather returned %d entries for %d ranks", gathered->size(), size));
  }
  std::vector<RankInfo> infos;
  uint64_t incoming_total = 0;
  for (int64_t r = 0; r < size; ++r) {
    absl::StatusOr<RankInfo> info = DecodeRankInfo((*gathered)[static_cast<size_t>(r)], r);
    if (!info.ok()) return info.status();
    if (info->hostname != me.hostname) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "POSIX fd handles travel only within one node, but rank %d runs on %s and rank %d on "
          "%s; a DWDP group that spans nodes needs fabric handles (multi-node NVLink with IMEX)",
          rank, me.hostname, r, info->hostname));
    }
    if (r != rank) incoming_total += info->handle_count;
    infos.push_back(std::move(*info));
  }
  const uint64_t group_nonce = infos[0].group_nonce;

  absl::StatusOr<uint64_t> open_file_limit = RaiseOpenFileLimit();
  if (!open_file_limit.ok()) return open_file_limit.status();
  constexpr uint64_t kFdHeadroom = 64;  // sockets, MPI, CUDA
  if (incoming_total + mine.size() + kFdHeadroom > *open_file_limit) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "rank %d would hold %d handle fds at once (%d received, %d exported) but the open-file "
        "limit is %d; raise it (ulimit -n)",
        rank, incoming_total + mine.size(), incoming_total, mine.size(), *open_file_limit));
  }

  if (options_.exit_after_export_rank == rank) {
    std::fprintf(stderr, "dwdp: test hook: group rank %ld exits after exporting its handles\n",
                 static_cast<long>(rank));
    std::fflush(stderr);
    std::_Exit(options_.exit_after_export_code);
  }

  const uid_t allowed_uid =
      options_.allowed_peer_uid.has_value() ? *options_.allowed_peer_uid : ::geteuid();
  ExchangeSession session(rank, size, options_, allowed_uid, group_nonce);
  absl::Status run = session.Run(std::move(*listener), infos, mine);
  if (!run.ok()) return run;

  std::vector<std::vector<std::vector<SharedHandle>>> result(1);
  result[0].resize(static_cast<size_t>(size));
  for (int64_t r = 0; r < size; ++r) {
    result[0][static_cast<size_t>(r)] = r == rank ? std::move(mine) : session.TakeInbox(r);
  }
  return result;
}

absl::Status FdHandleExchange::Barrier() {
  absl::Status status = group_.Barrier();
  if (!status.ok()) {
    return absl::Status(status.code(),
                        absl::StrFormat("barrier after the fd exchange on rank %d: %s",
                                        group_.rank(), status.message()));
  }
  return status;
}

}  // namespace dwdp::cuda
