#include "server/reflection_v1.h"

#include <unordered_set>
#include <utility>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

#include "grpc/reflection/v1/reflection.grpc.pb.h"

namespace skillpack {
namespace {

namespace pb = google::protobuf;
namespace rv1 = grpc::reflection::v1;

class ReflectionV1Service final : public rv1::ServerReflection::Service {
 public:
  explicit ReflectionV1Service(std::vector<std::string> services) : services_(std::move(services)) {}

  grpc::Status ServerReflectionInfo(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<rv1::ServerReflectionResponse, rv1::ServerReflectionRequest>* stream) override {
    rv1::ServerReflectionRequest request;
    while (!context->IsCancelled() && stream->Read(&request)) {
      rv1::ServerReflectionResponse response;
      response.set_valid_host(request.host());
      *response.mutable_original_request() = request;
      grpc::Status status = Answer(request, &response);
      if (!status.ok()) {
        response.clear_message_response();
        response.mutable_error_response()->set_error_code(status.error_code());
        response.mutable_error_response()->set_error_message(status.error_message());
      }
      if (!stream->Write(response)) break;
    }
    return grpc::Status::OK;
  }

 private:
  grpc::Status Answer(const rv1::ServerReflectionRequest& request, rv1::ServerReflectionResponse* response) const {
    const pb::DescriptorPool* pool = pb::DescriptorPool::generated_pool();
    // Files already sent in this response: each dependency goes once.
    std::unordered_set<std::string> sent;
    switch (request.message_request_case()) {
      case rv1::ServerReflectionRequest::kFileByFilename: {
        const pb::FileDescriptor* file = pool->FindFileByName(request.file_by_filename());
        if (file == nullptr) return grpc::Status(grpc::StatusCode::NOT_FOUND, "File not found.");
        AddFile(file, response->mutable_file_descriptor_response(), &sent);
        return grpc::Status::OK;
      }
      case rv1::ServerReflectionRequest::kFileContainingSymbol: {
        const pb::FileDescriptor* file = pool->FindFileContainingSymbol(request.file_containing_symbol());
        if (file == nullptr) return grpc::Status(grpc::StatusCode::NOT_FOUND, "Symbol not found.");
        AddFile(file, response->mutable_file_descriptor_response(), &sent);
        return grpc::Status::OK;
      }
      case rv1::ServerReflectionRequest::kFileContainingExtension: {
        const auto& ext = request.file_containing_extension();
        const pb::Descriptor* type = pool->FindMessageTypeByName(ext.containing_type());
        if (type == nullptr) return grpc::Status(grpc::StatusCode::NOT_FOUND, "Type not found.");
        const pb::FieldDescriptor* field = pool->FindExtensionByNumber(type, ext.extension_number());
        if (field == nullptr) return grpc::Status(grpc::StatusCode::NOT_FOUND, "Extension not found.");
        AddFile(field->file(), response->mutable_file_descriptor_response(), &sent);
        return grpc::Status::OK;
      }
      case rv1::ServerReflectionRequest::kAllExtensionNumbersOfType: {
        const pb::Descriptor* type = pool->FindMessageTypeByName(request.all_extension_numbers_of_type());
        if (type == nullptr) return grpc::Status(grpc::StatusCode::NOT_FOUND, "Type not found.");
        std::vector<const pb::FieldDescriptor*> extensions;
        pool->FindAllExtensions(type, &extensions);
        auto* numbers = response->mutable_all_extension_numbers_response();
        numbers->set_base_type_name(type->full_name());
        for (const pb::FieldDescriptor* e : extensions) numbers->add_extension_number(e->number());
        return grpc::Status::OK;
      }
      case rv1::ServerReflectionRequest::kListServices: {
        auto* list = response->mutable_list_services_response();
        for (const std::string& name : services_) list->add_service()->set_name(name);
        return grpc::Status::OK;
      }
      case rv1::ServerReflectionRequest::MESSAGE_REQUEST_NOT_SET:
        break;
    }
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "The reflection request is not implemented.");
  }

  // Appends `file` and, transitively, the files it imports.
  static void AddFile(const pb::FileDescriptor* file, rv1::FileDescriptorResponse* out,
                      std::unordered_set<std::string>* sent) {
    if (!sent->insert(file->name()).second) return;
    pb::FileDescriptorProto proto;
    file->CopyTo(&proto);
    out->add_file_descriptor_proto(proto.SerializeAsString());
    for (int i = 0; i < file->dependency_count(); ++i) AddFile(file->dependency(i), out, sent);
  }

  const std::vector<std::string> services_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewReflectionV1Service(std::vector<std::string> services) {
  return std::make_unique<ReflectionV1Service>(std::move(services));
}

}  // namespace skillpack
